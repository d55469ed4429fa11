// The playground: a form over POST /api/v1/images/jobs, the job followed over its event stream,
// results shown from blob: URLs (an <img> cannot send the key), history kept in localStorage.
import { api, ApiError, apiKey, setApiKey } from './api.js';
import { clearHistory, forget, readHistory, remember } from './history.js';
import { InputImage } from './input-image.js';

const $ = (id) => document.getElementById(id);
const TERMINAL = ['succeeded', 'failed', 'canceled'];
const EDIT_MODES = ['img2img', 'inpaint'];
const LONG_POLL_SECONDS = 25;

const form = $('generate-form');
const el = {
  key: $('api_key'), prompt: $('prompt'), negative: $('negative_prompt'), model: $('model'), modelDescription: $('model-description'), modelAvailability: $('model-availability'), cache: $('cache'),
  ratio: $('aspect_ratio'), width: $('width'), height: $('height'), sizeHint: $('hint-size'), ratioRow: $('ratio-row'), customRow: $('custom-row'),
  numImages: $('num_images'), steps: $('num_inference_steps'), guidance: $('guidance_scale'),
  seed: $('seed'), reuseSeed: $('reuse-seed'), format: $('output_format'), quality: $('output_quality'),
  edit: $('edit-fieldset'), file: $('image'), drop: $('drop-zone'), preview: $('input-preview'), editMode: $('edit_mode'),
  strength: $('strength'), strengthValue: $('strength-value'), maskTools: $('mask-tools'), generate: $('generate'),
  run: $('run'), runEmpty: $('run-empty'), runStatus: $('run-status'), runId: $('run-id'), runQueue: $('run-queue'),
  progress: $('run-progress'), steps_: $('run-steps'), runError: $('run-error'), cancel: $('cancel'), meta: $('run-meta'), results: $('results'),
  history: $('history'), historyEmpty: $('history-empty'), historyClear: $('history-clear'), openForm: $('open-form'), openId: $('open_id'),
};

const input = new InputImage({ img: $('input-img'), canvas: $('mask-canvas'), info: $('input-info'), brush: $('brush') });
let models = [];
/** The job on screen: its id, an AbortController for its stream and image downloads, its object URLs. */
let shown = null;
let lastSeed = null;

// ---- errors next to their fields -------------------------------------------------------------

/** Which error slot shows a problem of an API field (fields without one of their own use a neighbour). */
const ERROR_SLOT = { mode: 'image' };

function clearErrors(scope = document) {
  for (const p of scope.querySelectorAll('p.error')) {
    p.hidden = true;
    p.textContent = '';
  }
  for (const i of scope.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

/** Shows a problem by its field; false when the field has no visible place (the caller shows it above the button). */
function showFieldError(field, message) {
  const slot = $(`error-${ERROR_SLOT[field] ?? field}`);
  if (!slot || slot.parentElement.closest('[hidden]')) return false;
  slot.textContent = slot.hidden || !slot.textContent ? message : `${slot.textContent} ${message}`;
  slot.hidden = false;
  const control = $(ERROR_SLOT[field] ?? field);
  if (control) control.setAttribute('aria-invalid', 'true');
  return true;
}

function showGeneralError(message) {
  const p = $('error-general');
  p.textContent = message;
  p.hidden = false;
}

/** An API error shown where it belongs: by field, the key field for a 401, or above the button. */
function showApiError(e) {
  if (!(e instanceof ApiError)) {
    showGeneralError(e.message ?? String(e));
    return;
  }
  if (e.status === 401) {
    showFieldError('api_key', `${e.message} — enter an API key above.`);
    el.key.focus();
    return;
  }
  const problems = e.fieldProblems();
  let first = null;
  const unplaced = [];
  for (const p of problems) {
    if (!showFieldError(p.field, p.message)) unplaced.push(p);
    else if (!first) first = $(ERROR_SLOT[p.field] ?? p.field);
  }
  if (!problems.length || unplaced.length) showGeneralError(unplaced.length ? unplaced.map((p) => p.message).join(' ') : e.message);
  if (first && typeof first.focus === 'function') first.focus();
}

// ---- models drive the controls ---------------------------------------------------------------

function option(value, label, selected = false) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  o.selected = selected;
  return o;
}

function currentModel() {
  return models.find((m) => m.id === el.model.value);
}

function sizeMode() {
  return form.elements.size_mode.value;
}

function editModes(m) {
  return (m?.modes ?? []).filter((x) => EDIT_MODES.includes(x));
}

function applyModel() {
  const m = currentModel();
  if (!m) return;
  const lim = m.limits;
  el.modelDescription.textContent = m.description ?? '';
  // Per ComfyUI: true (has every file), false (misses some), null (did not answer).
  const servers = Object.values(m.available ?? {});
  const ready = servers.filter((v) => v === true).length;
  el.modelAvailability.hidden = servers.length === 0 || ready > 0;
  el.modelAvailability.textContent = `No GPU has this model's files right now (${servers.length} ComfyUI checked): jobs may be refused or wait.`;
  const previousRatio = el.ratio.value;
  el.ratio.replaceChildren(...Object.entries(m.aspect_ratios).map(([r, s]) => option(r, `${r} (${s.width} × ${s.height})`, r === (previousRatio || '1:1'))));
  for (const [input_, side] of [[el.width, 'width'], [el.height, 'height']]) {
    input_.min = lim[side].min;
    input_.max = lim[side].max;
    input_.step = lim[side].multiple_of;
    input_.value = m.defaults[side];
    input_.disabled = lim.fixed.includes(side);
  }
  el.sizeHint.textContent = `${lim.width.min}–${lim.width.max} × ${lim.height.min}–${lim.height.max}, multiples of ${lim.width.multiple_of}; at most ${(lim.max_pixels / 1e6).toFixed(1)} MP.`;
  el.numImages.max = lim.num_images.max;
  el.numImages.min = lim.num_images.min;
  el.numImages.value = Math.min(Math.max(Number(el.numImages.value) || 1, lim.num_images.min), lim.num_images.max);
  el.steps.min = lim.num_inference_steps.min;
  el.steps.max = lim.num_inference_steps.max;
  el.steps.value = m.defaults.num_inference_steps;
  el.steps.disabled = lim.fixed.includes('num_inference_steps');
  el.guidance.min = lim.guidance_scale.min;
  el.guidance.max = lim.guidance_scale.max;
  el.guidance.value = m.defaults.guidance_scale;
  el.guidance.disabled = lim.fixed.includes('guidance_scale');
  const previousFormat = el.format.value || 'png';
  el.format.replaceChildren(...lim.output_formats.map((f) => option(f, f.toUpperCase(), f === previousFormat)));
  el.quality.min = lim.output_quality.min;
  el.quality.max = lim.output_quality.max;
  const modes = editModes(m);
  el.edit.hidden = modes.length === 0;
  const previousMode = el.editMode.value;
  el.editMode.replaceChildren(...modes.map((x) => option(x, x === 'img2img' ? 'img2img (whole image)' : 'Inpaint (painted mask)', x === previousMode)));
  applyEditMode();
  applyFormat();
}

function applySizeMode() {
  const mode = sizeMode();
  el.ratioRow.hidden = mode !== 'ratio';
  el.customRow.hidden = mode !== 'custom';
}

/** "The input image's size" is a choice only while there is an input image (and the model takes one). */
function applyInputSizeChoice() {
  const offered = input.present && !el.edit.hidden;
  const choice = $('size-input-choice');
  if (offered && choice.hidden) form.elements.size_mode.value = 'input';
  if (!offered && sizeMode() === 'input') form.elements.size_mode.value = 'ratio';
  choice.hidden = !offered;
  applySizeMode();
}

function applyFormat() {
  el.quality.disabled = el.format.value === 'png';
}

function applyEditMode() {
  const m = currentModel();
  const mode = el.editMode.value;
  const inpaint = mode === 'inpaint';
  el.maskTools.hidden = !inpaint;
  input.setPaintable(inpaint);
  const strength = m?.edit_defaults?.strength?.[mode];
  if (strength !== undefined) el.strength.value = strength;
  el.strengthValue.textContent = el.strength.value;
  // An edit makes one image.
  el.numImages.disabled = (input.present && !el.edit.hidden) || (m ? m.limits.num_images.max <= 1 : false);
  applyInputSizeChoice();
}

async function loadModels() {
  clearErrors();
  try {
    models = await api.models();
  } catch (e) {
    showApiError(e);
    return false;
  }
  const previous = el.model.value;
  el.model.replaceChildren(...models.map((m) => option(m.id, m.display_name ? `${m.display_name} (${m.id})` : m.id, previous ? m.id === previous : m.default)));
  applyModel();
  return true;
}

// ---- the request ----------------------------------------------------------------------------

function intOf(control) {
  const v = control.value.trim();
  return v === '' ? NaN : Number(v);
}

/** The body of POST /images/jobs from the form; the API checks it (the form does not second-guess it). */
async function buildRequest() {
  const m = currentModel();
  const body = { prompt: el.prompt.value, model: el.model.value };
  if (el.negative.value) body.negative_prompt = el.negative.value;
  if (sizeMode() === 'ratio') body.aspect_ratio = el.ratio.value;
  else if (sizeMode() === 'custom') {
    if (!el.width.disabled) body.width = intOf(el.width);
    if (!el.height.disabled) body.height = intOf(el.height);
  }
  if (!el.numImages.disabled) body.num_images = intOf(el.numImages);
  if (!el.steps.disabled && el.steps.value !== String(m?.defaults.num_inference_steps)) body.num_inference_steps = intOf(el.steps);
  if (!el.guidance.disabled && el.guidance.value !== String(m?.defaults.guidance_scale)) body.guidance_scale = Number(el.guidance.value);
  if (form.elements.seed_mode.value === 'fixed') body.seed = intOf(el.seed);
  if (!el.cache.checked) body.cache = false;
  body.output_format = el.format.value;
  if (!el.quality.disabled) body.output_quality = intOf(el.quality);
  if (input.present && !el.edit.hidden) {
    // The output has the input's size unless a ratio or a size is chosen (then the graph scales the input).
    delete body.num_images;
    if (!input.uploadId) input.uploadId = (await uploadOrFail(input.blob, 'image')).id;
    body.image = input.uploadId;
    body.strength = Number(el.strength.value);
    if (el.editMode.value === 'inpaint') {
      if (!input.painted) throw new ApiError(400, 'no_mask', 'Paint the area to repaint on the image (or choose img2img)', { field: 'mask' });
      if (!input.maskUpload) input.maskUpload = (await uploadOrFail(await input.maskBlob(), 'mask')).id;
      body.mask = input.maskUpload;
    }
  }
  return body;
}

/** An upload's error concerns the field it was for. */
async function uploadOrFail(blob, field) {
  try {
    return await api.upload(blob);
  } catch (e) {
    if (e instanceof ApiError && e.status !== 401) throw new ApiError(e.status, e.code, e.message, { field });
    throw e;
  }
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors(form);
  el.generate.disabled = true;
  try {
    const body = await buildRequest();
    const job = await api.submit(body);
    remember(job);
    renderHistory();
    void follow(job.id, job);
    // One column (a phone): the job is below the form.
    if (window.matchMedia('(max-width: 899px)').matches) $('run-title').scrollIntoView({ block: 'start' });
  } catch (e) {
    showApiError(e);
  } finally {
    el.generate.disabled = false;
  }
}

// ---- following a job ------------------------------------------------------------------------

function stopShown() {
  if (!shown) return;
  shown.abort.abort();
  for (const u of shown.urls) URL.revokeObjectURL(u);
  shown = null;
}

function renderStatus(job) {
  el.run.hidden = false;
  el.runEmpty.hidden = true;
  el.runStatus.textContent = job.status;
  el.runStatus.dataset.status = job.status;
  el.runId.textContent = job.id ?? job.job_id ?? '';
  const queued = job.status === 'queued' && typeof job.queue_position === 'number';
  el.runQueue.hidden = !queued;
  // queue_position counts the jobs ahead (0 = next).
  const n = job.queue_position;
  if (queued) el.runQueue.textContent = n === 0 ? 'Next in the queue' : `In the queue: ${n} job${n === 1 ? '' : 's'} ahead`;
  if (job.progress) renderProgress(job.progress);
  el.cancel.hidden = TERMINAL.includes(job.status);
}

function renderProgress(p) {
  el.progress.value = p.fraction ?? (p.total_steps ? p.step / p.total_steps : 0);
  el.steps_.textContent = `step ${p.step} of ${p.total_steps}`;
}

function metaRow(dt, dd) {
  const t = document.createElement('dt');
  t.textContent = dt;
  const d = document.createElement('dd');
  d.textContent = dd;
  el.meta.append(t, d);
}

async function renderFinished(job, state) {
  renderStatus(job);
  remember(job);
  renderHistory();
  el.cancel.hidden = true;
  if (job.status === 'succeeded') el.progress.value = 1;
  el.runError.hidden = !job.error;
  if (job.error) el.runError.textContent = `${job.error.message} (${job.error.code})`;
  el.meta.replaceChildren();
  const p = job.params ?? {};
  metaRow('Model', job.model);
  metaRow('Size', `${p.width} × ${p.height}`);
  metaRow('Seed', String(p.seed));
  if (job.cached) metaRow('Cached', 'cached: answered from an earlier identical seeded job, no GPU run');
  if (job.attempts > 1) metaRow('Attempts', String(job.attempts));
  if (job.timings) metaRow('Timings', `queue ${job.timings.queue_ms} ms, run ${job.timings.execution_ms} ms, total ${job.timings.total_ms} ms`);
  el.meta.hidden = false;
  if (typeof p.seed === 'number') {
    lastSeed = p.seed;
    el.reuseSeed.disabled = false;
  }
  el.results.replaceChildren();
  const n = job.images.length;
  for (const image of job.images) {
    const fig = document.createElement('figure');
    const img = document.createElement('img');
    img.alt = `${p.prompt} (image ${image.index + 1} of ${n})`;
    img.width = image.width;
    img.height = image.height;
    const cap = document.createElement('figcaption');
    const info = document.createElement('span');
    info.textContent = `${image.width} × ${image.height} · ${image.content_type} · ${Math.round(image.bytes / 1024)} KB${job.cached ? ' · cached' : ''}`;
    cap.append(info);
    fig.append(img, cap);
    el.results.append(fig);
    try {
      const blob = await api.image(image.url, state.abort.signal);
      if (shown !== state) return;
      const url = URL.createObjectURL(blob);
      state.urls.push(url);
      img.src = url;
      const download = document.createElement('a');
      download.href = url;
      download.download = `${job.id}-${image.index}.${(image.content_type.split('/')[1] ?? 'png').replace('jpeg', 'jpg')}`;
      download.textContent = 'Download';
      const use = document.createElement('button');
      use.type = 'button';
      use.className = 'secondary';
      use.textContent = 'Use as input';
      use.addEventListener('click', () => void useAsInput(blob, `${job.id} image ${image.index + 1}`));
      cap.append(download, use);
    } catch (e) {
      if (e.name === 'AbortError') return;
      const err = document.createElement('span');
      err.className = 'error';
      err.textContent = e.message;
      cap.append(err);
    }
  }
}

/** Shows a job and follows it to its end: SSE first, long-poll (?wait=) when the stream breaks. */
async function follow(id, first) {
  stopShown();
  const state = { id, abort: new AbortController(), urls: [] };
  shown = state;
  // The address re-opens this job (a bookmark, a link to a colleague with the same key).
  window.history.replaceState(null, '', `#job=${encodeURIComponent(id)}`);
  el.results.replaceChildren();
  el.meta.hidden = true;
  el.runError.hidden = true;
  el.progress.value = 0;
  el.steps_.textContent = '';
  if (first) renderStatus(first);
  let final = null;
  try {
    await api.events(id, (ev) => {
      if (shown !== state) return;
      if (ev.event === 'status') renderStatus(ev.data);
      else if (ev.event === 'progress') renderProgress(ev.data);
      else if (ev.event === 'job') final = ev.data;
    }, state.abort.signal);
  } catch (e) {
    if (e.name === 'AbortError' || shown !== state) return;
    if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
      el.run.hidden = false;
      el.runEmpty.hidden = true;
      el.runStatus.textContent = 'error';
      el.runError.textContent = e.status === 401 ? `${e.message} — enter an API key.` : e.message;
      el.runError.hidden = false;
      el.cancel.hidden = true;
      if (e.status === 401) showApiError(e);
      if (e.code === 'job_not_found' || e.code === 'job_expired') {
        forget(id);
        renderHistory();
      }
      return;
    }
  }
  // The stream ended without the final resource (a proxy cut it, the network blinked): long-poll.
  while (!final && shown === state) {
    try {
      const job = await api.job(id, { waitSeconds: LONG_POLL_SECONDS, signal: state.abort.signal });
      renderStatus(job);
      if (TERMINAL.includes(job.status)) final = job;
    } catch (e) {
      if (e.name === 'AbortError') return;
      el.runError.textContent = e.message;
      el.runError.hidden = false;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) return;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  if (final && shown === state) await renderFinished(final, state);
}

async function onCancel() {
  if (!shown) return;
  el.cancel.disabled = true;
  try {
    // The stream then delivers the canceled job; a job that ended meanwhile answers 409 job_finished.
    await api.cancel(shown.id);
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'job_finished')) {
      el.runError.textContent = e.message;
      el.runError.hidden = false;
    }
  } finally {
    el.cancel.disabled = false;
  }
}

// ---- input image ----------------------------------------------------------------------------

async function useAsInput(blob, name) {
  clearErrors(el.edit);
  try {
    await input.set(blob, name);
  } catch (e) {
    showFieldError('image', e.message);
    return;
  }
  el.preview.hidden = false;
  if (!el.editMode.value && el.editMode.options.length) el.editMode.selectedIndex = 0;
  if (el.edit.hidden) {
    showGeneralError(`Model ${el.model.value} has no edit modes; pick one that has to use an input image.`);
    return;
  }
  applyEditMode();
  el.edit.scrollIntoView({ block: 'nearest' });
  el.editMode.focus();
}

function removeInput() {
  input.clear();
  el.file.value = '';
  el.preview.hidden = true;
  applyEditMode();
  el.file.focus();
}

// ---- history --------------------------------------------------------------------------------

function renderHistory() {
  const list = readHistory();
  el.history.replaceChildren(
    ...list.map((entry) => {
      const li = document.createElement('li');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'link';
      open.textContent = entry.prompt || entry.id;
      open.title = entry.id;
      open.addEventListener('click', () => void follow(entry.id));
      const info = document.createElement('span');
      info.className = 'hint';
      info.textContent = ` ${entry.status} · ${entry.model}${entry.created_at ? ` · ${new Date(entry.created_at).toLocaleString()}` : ''}`;
      li.dataset.jobId = entry.id;
      li.append(open, info);
      return li;
    }),
  );
  el.historyEmpty.hidden = list.length > 0;
  el.historyClear.hidden = list.length === 0;
}

// ---- wiring ---------------------------------------------------------------------------------

el.key.value = apiKey();
el.key.addEventListener('change', () => {
  setApiKey(el.key.value.trim());
  void loadModels();
});
form.addEventListener('submit', (e) => void onSubmit(e));
el.model.addEventListener('change', applyModel);
for (const r of form.elements.size_mode) r.addEventListener('change', applySizeMode);
for (const r of form.elements.seed_mode) {
  r.addEventListener('change', () => {
    el.seed.disabled = form.elements.seed_mode.value !== 'fixed';
    if (!el.seed.disabled && el.seed.value === '' && lastSeed !== null) el.seed.value = String(lastSeed);
  });
}
el.reuseSeed.addEventListener('click', () => {
  if (lastSeed === null) return;
  form.elements.seed_mode.value = 'fixed';
  el.seed.disabled = false;
  el.seed.value = String(lastSeed);
  el.seed.focus();
});
el.format.addEventListener('change', applyFormat);
el.editMode.addEventListener('change', applyEditMode);
el.strength.addEventListener('input', () => (el.strengthValue.textContent = el.strength.value));
el.file.addEventListener('change', () => {
  const f = el.file.files?.[0];
  if (f) void useAsInput(f, f.name);
});
el.drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  el.drop.classList.add('over');
});
el.drop.addEventListener('dragleave', () => el.drop.classList.remove('over'));
el.drop.addEventListener('drop', (e) => {
  e.preventDefault();
  el.drop.classList.remove('over');
  const f = e.dataTransfer?.files?.[0];
  if (f) void useAsInput(f, f.name);
});
$('input-remove').addEventListener('click', removeInput);
$('mask-clear').addEventListener('click', () => input.clearMask());
$('mask-fill').addEventListener('click', () => input.fillMask());
el.cancel.addEventListener('click', () => void onCancel());
el.historyClear.addEventListener('click', () => {
  clearHistory();
  renderHistory();
});
el.openForm.addEventListener('submit', (e) => {
  e.preventDefault();
  clearErrors(el.openForm);
  const id = el.openId.value.trim();
  if (!/^[0-9a-f-]{36}$/i.test(id)) {
    showFieldError('open_id', 'A job id looks like 6f1c…-…: 36 characters, hex digits and dashes');
    return;
  }
  void follow(id);
});

/** `#job=<id>` in the address opens that job (the page sets it for the job on screen). */
function openFromAddress() {
  const id = new URLSearchParams(location.hash.slice(1)).get('job');
  if (id && id !== shown?.id) void follow(id);
}
window.addEventListener('hashchange', openFromAddress);

renderHistory();
void loadModels().then(openFromAddress);
