/** Mean absolute difference per channel of two raw RGB buffers, over the pixels `where` picks. */
export function meanDiff(a: Buffer, b: Buffer, where: (p: number) => boolean = () => true): number {
  let sum = 0;
  let n = 0;
  for (let p = 0; p < a.length / 3; p++) {
    if (!where(p)) continue;
    for (let c = 0; c < 3; c++) sum += Math.abs(a[p * 3 + c] - b[p * 3 + c]);
    n += 3;
  }
  return sum / n;
}
