// The input of an edit: the picked (or dropped, or "use as input") image, and a mask painted over it.
// The mask canvas has the image's own pixel size, so the PNG it exports matches the image exactly.

export class InputImage {
  constructor({ img, canvas, info, brush }) {
    this.img = img;
    this.canvas = canvas;
    this.info = info;
    this.brush = brush;
    this.blob = null;
    this.url = null;
    this.width = 0;
    this.height = 0;
    this.painted = false;
    this.paintable = false;
    /** The upload of this blob, reused while the image does not change. */
    this.uploadId = null;
    this.maskUpload = null;
    this.bindPainting();
  }

  get present() {
    return this.blob !== null;
  }

  async set(blob, name = 'image') {
    const url = URL.createObjectURL(blob);
    const img = this.img;
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error(`${name} is not an image this browser can show`));
      img.src = url;
    }).catch((e) => {
      URL.revokeObjectURL(url);
      throw e;
    });
    if (this.url) URL.revokeObjectURL(this.url);
    this.blob = blob;
    this.url = url;
    this.width = img.naturalWidth;
    this.height = img.naturalHeight;
    this.uploadId = null;
    this.canvas.width = this.width;
    this.canvas.height = this.height;
    this.clearMask();
    this.info.textContent = `${name}: ${this.width} × ${this.height}, ${Math.round(blob.size / 1024)} KB`;
  }

  clear() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.blob = null;
    this.url = null;
    this.uploadId = null;
    this.img.removeAttribute('src');
    this.clearMask();
  }

  setPaintable(on) {
    this.paintable = on;
    this.canvas.classList.toggle('paintable', on);
  }

  clearMask() {
    this.canvas.getContext('2d').clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.painted = false;
    this.maskUpload = null;
  }

  fillMask() {
    const ctx = this.canvas.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.painted = true;
    this.maskUpload = null;
  }

  /** The mask as ComfyUI wants it: white where the image is repainted, black elsewhere, at the image's size. */
  maskBlob() {
    const out = document.createElement('canvas');
    out.width = this.width;
    out.height = this.height;
    const ctx = out.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(this.canvas, 0, 0);
    return new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error('The mask could not be encoded'))), 'image/png'));
  }

  bindPainting() {
    const c = this.canvas;
    let last = null;
    const at = (e) => {
      const r = c.getBoundingClientRect();
      return { x: ((e.clientX - r.left) / r.width) * c.width, y: ((e.clientY - r.top) / r.height) * c.height, scale: c.width / r.width };
    };
    const stroke = (from, to) => {
      const ctx = c.getContext('2d');
      ctx.strokeStyle = '#fff';
      ctx.fillStyle = '#fff';
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      // The brush is sized in screen pixels, so it feels the same whatever the image's size.
      ctx.lineWidth = Number(this.brush.value) * to.scale;
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
      this.painted = true;
      this.maskUpload = null;
    };
    c.addEventListener('pointerdown', (e) => {
      if (!this.paintable) return;
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      last = at(e);
      stroke(last, last);
    });
    c.addEventListener('pointermove', (e) => {
      if (!last) return;
      const p = at(e);
      stroke(last, p);
      last = p;
    });
    const end = () => (last = null);
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
  }
}
