import { SlotGate } from './slot-gate';

describe('SlotGate', () => {
  it('lets one holder in at a time and serves waiters in arrival order', async () => {
    const gate = new SlotGate();
    const order: string[] = [];
    expect(await gate.acquire(new AbortController().signal)).toBe(true);
    const b = gate.acquire(new AbortController().signal).then((held) => order.push(`b:${held}`));
    const c = gate.acquire(new AbortController().signal).then((held) => order.push(`c:${held}`));
    await Promise.resolve();
    expect(order).toEqual([]);
    expect(gate.waiting).toBe(2);
    gate.release();
    await b;
    expect(order).toEqual(['b:true']);
    gate.release();
    await c;
    expect(order).toEqual(['b:true', 'c:true']);
    gate.release();
    expect(await gate.acquire(new AbortController().signal)).toBe(true);
  });

  it('an aborted waiter leaves the line without the gate and does not consume a release', async () => {
    const gate = new SlotGate();
    await gate.acquire(new AbortController().signal);
    const abort = new AbortController();
    const aborted = gate.acquire(abort.signal);
    const next = gate.acquire(new AbortController().signal);
    abort.abort();
    expect(await aborted).toBe(false);
    expect(gate.waiting).toBe(1);
    gate.release();
    expect(await next).toBe(true);
  });
});

describe('SlotGate priorities', () => {
  it('serves waiters by priority (lower first), then in arrival order', async () => {
    const gate = new SlotGate();
    await gate.acquire(new AbortController().signal);
    const order: string[] = [];
    const wait = (name: string, priority: number) => gate.acquire(new AbortController().signal, priority).then(() => order.push(name));
    const all = [wait('low-1', 500), wait('high-1', 5), wait('low-2', 500), wait('high-2', 5), wait('none', 0)];
    for (let i = 0; i < all.length; i++) {
      gate.release();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    expect(order).toEqual(['none', 'high-1', 'high-2', 'low-1', 'low-2']);
  });
});

describe('SlotGate with two seats (pipelined dispatch)', () => {
  it('lets two holders in, queues the third until a seat is given back', async () => {
    const gate = new SlotGate(2);
    expect(await gate.acquire(new AbortController().signal)).toBe(true);
    expect(await gate.acquire(new AbortController().signal)).toBe(true);
    expect(gate.inUse).toBe(2);
    let third = false;
    const p = gate.acquire(new AbortController().signal).then((held) => (third = held));
    await Promise.resolve();
    expect(third).toBe(false);
    expect(gate.waiting).toBe(1);
    gate.release();
    await p;
    expect(third).toBe(true);
    expect(gate.inUse).toBe(2);
    gate.release();
    gate.release();
    expect(gate.inUse).toBe(0);
  });

  it('occupy takes only the free seats, and each comes back with release', async () => {
    const gate = new SlotGate(2);
    expect(await gate.acquire(new AbortController().signal)).toBe(true);
    expect(gate.occupy(3)).toBe(1);
    expect(gate.occupy(1)).toBe(0);
    expect(gate.inUse).toBe(2);
    let next = false;
    const p = gate.acquire(new AbortController().signal).then((held) => (next = held));
    gate.release();
    await p;
    expect(next).toBe(true);
    gate.release();
    gate.release();
    expect(gate.inUse).toBe(0);
    expect(gate.occupy(-1)).toBe(0);
  });

  it('refuses a seat count that is not a positive integer', () => {
    expect(() => new SlotGate(0)).toThrow(RangeError);
    expect(() => new SlotGate(1.5)).toThrow(RangeError);
  });
});
