import { EventEmitter } from 'node:events';
import { DependencyState, isConnectionError, watchBullMq, watchRedisClient } from './dependency-state';

function recorder() {
  const lines: Array<{ level: string; msg: unknown }> = [];
  const sink = { warn: (o: Record<string, unknown>) => lines.push({ level: 'warn', msg: o.msg }), log: (o: Record<string, unknown>) => lines.push({ level: 'info', msg: o.msg }) };
  return { lines, sink };
}

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });

describe('DependencyState', () => {
  it('logs the first failure and the last recovery across many connections, nothing in between', () => {
    const { lines, sink } = recorder();
    const state = new DependencyState('redis', sink);
    const [a, b, c] = [{}, {}, {}];
    for (let i = 0; i < 50; i++) for (const conn of [a, b, c]) state.failed(conn, refused);
    expect(state.available).toBe(false);
    state.recovered(a);
    state.recovered(b);
    state.failed(b, refused);
    expect(lines).toEqual([{ level: 'warn', msg: 'redis unavailable' }]);
    state.recovered(b);
    state.recovered(c);
    expect(lines).toEqual([{ level: 'warn', msg: 'redis unavailable' }, { level: 'info', msg: 'redis available again' }]);
    expect(state.available).toBe(true);
    state.failed(a, refused);
    expect(lines.map((l) => l.msg)).toEqual(['redis unavailable', 'redis available again', 'redis unavailable']);
  });

  it('a ready from a connection that never failed says nothing; a connection closed while failing ends nothing', () => {
    const { lines, sink } = recorder();
    const state = new DependencyState('redis', sink);
    const [a, b] = [{}, {}];
    state.recovered(a);
    state.failed(a, refused);
    state.failed(b, refused);
    state.forget(a);
    expect(state.available).toBe(false);
    state.recovered(b);
    expect(lines.map((l) => l.msg)).toEqual(['redis unavailable', 'redis available again']);
  });
});

describe('watchers', () => {
  it('an ioredis-like client: error → unavailable, ready → available again, one listener set however often watched', () => {
    const { lines, sink } = recorder();
    const state = new DependencyState('redis', sink);
    const client = new EventEmitter();
    watchRedisClient(client, state);
    watchRedisClient(client, state);
    expect(client.listenerCount('error')).toBe(1);
    client.emit('error', refused);
    client.emit('error', refused);
    client.emit('ready');
    expect(lines.map((l) => l.msg)).toEqual(['redis unavailable', 'redis available again']);
  });

  it('a BullMQ-like queue: connection errors to the state, recovery from its backend, other errors to the caller', () => {
    const { lines, sink } = recorder();
    const state = new DependencyState('redis', sink);
    const backend = new EventEmitter();
    const queue = Object.assign(new EventEmitter(), { getBackend: () => backend });
    const other: string[] = [];
    watchBullMq(queue, (e) => other.push(e.message), state);
    queue.emit('error', refused);
    queue.emit('error', new Error('could not renew lock for job 7'));
    backend.emit('ready');
    expect(lines.map((l) => l.msg)).toEqual(['redis unavailable', 'redis available again']);
    expect(other).toEqual(['could not renew lock for job 7']);
  });

  it('tells connection errors from others', () => {
    expect(isConnectionError(refused)).toBe(true);
    expect(isConnectionError(new Error("Stream isn't writeable and enableOfflineQueue options is false"))).toBe(true);
    expect(isConnectionError(new Error('Connection is closed.'))).toBe(true);
    expect(isConnectionError(new Error('Missing lock for job 3. moveToFinished'))).toBe(false);
    expect(isConnectionError('ECONNREFUSED')).toBe(false);
  });
});
