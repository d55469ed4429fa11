/**
 * The WebSocket side of ComfyUI's PromptServer: the `sid -> socket` map, targeted vs broadcast
 * sends, the connect-time `status` (+ `executing` resend), the optional first `feature_flags`
 * message, the reconnect-unregister bug (behind a switch) and the drop-after-N-messages fault.
 */
import { randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';
import { FaultState } from './faults';
import { JsonObject, JsonValue, isJsonObject, orderedObject, parseJson, pyDumps } from './py-json';

interface SocketMeta {
  sid: string;
  /** Messages sent since connect or since the drop fault was last set. */
  sent: number;
  dropping: boolean;
  featureFlags: JsonObject;
  firstMessage: boolean;
}

export interface HubHooks {
  /** `status` payload (`{exec_info: {queue_remaining}}`). */
  queueInfo(): JsonObject;
  /** The node to resend to a reconnecting client whose prompt is running, if any. */
  resendNodeFor(sid: string): string | null;
  serverFeatures(): JsonObject;
  onDrop(): void;
}

export class WsHub {
  private readonly sockets = new Map<string, WebSocket>();
  private readonly meta = new Map<WebSocket, SocketMeta>();
  private readonly droppedSids = new Set<string>();

  constructor(private readonly faults: FaultState, private readonly hooks: HubHooks) {
    faults.on('change', (keys: string[]) => {
      if (keys.includes('dropSocketAfter')) this.armDrop();
    });
  }

  get connections(): number {
    return this.meta.size;
  }

  private armDrop(): void {
    this.droppedSids.clear();
    for (const m of this.meta.values()) m.sent = 0;
    if (this.faults.get().dropSocketAfter === 0) {
      for (const [ws, m] of this.meta) this.drop(ws, m);
    }
  }

  private drop(ws: WebSocket, m: SocketMeta, after?: string | Buffer): void {
    if (m.dropping) return;
    m.dropping = true;
    this.droppedSids.add(m.sid);
    this.hooks.onDrop();
    if (after !== undefined && ws.readyState === WebSocket.OPEN) ws.send(after, () => ws.terminate());
    else ws.terminate();
  }

  private deliver(ws: WebSocket, payload: string | Buffer): void {
    const m = this.meta.get(ws);
    if (!m || m.dropping || ws.readyState !== WebSocket.OPEN) return;
    const n = this.faults.get().dropSocketAfter;
    if (n !== null && !this.droppedSids.has(m.sid)) {
      m.sent += 1;
      if (m.sent >= n) {
        this.drop(ws, m, payload);
        return;
      }
    }
    ws.send(payload);
  }

  /** `send_sync(event, data, sid)`: sid null broadcasts, else only that sid's socket (if any). */
  send(event: string, data: JsonObject, sid: string | null): void {
    const text = pyDumps(orderedObject([['type', event], ['data', data]]));
    if (sid === null) for (const ws of [...this.sockets.values()]) this.deliver(ws, text);
    else {
      const ws = this.sockets.get(sid);
      if (ws) this.deliver(ws, text);
    }
  }

  /** Binary frame: `[u32 BE type][payload]`. */
  sendBinary(type: number, payload: Buffer, sid: string | null): void {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(type);
    const frame = Buffer.concat([head, payload]);
    if (sid === null) for (const ws of [...this.sockets.values()]) this.deliver(ws, frame);
    else {
      const ws = this.sockets.get(sid);
      if (ws) this.deliver(ws, frame);
    }
  }

  /** `feature_flags.supports_feature(sockets_metadata, sid, name)`. */
  supports(sid: string | null, feature: string): boolean {
    if (sid === null) return false;
    const ws = this.sockets.get(sid);
    const m = ws ? this.meta.get(ws) : undefined;
    return m?.featureFlags[feature] === true;
  }

  /** `websocket_handler` after the handshake. */
  attach(ws: WebSocket, clientId: string | null): void {
    const sid = clientId ? clientId : randomUUID().replace(/-/g, '');
    this.sockets.delete(sid);
    this.sockets.set(sid, ws);
    const m: SocketMeta = { sid, sent: 0, dropping: false, featureFlags: {}, firstMessage: true };
    this.meta.set(ws, m);

    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg: JsonValue;
      try {
        msg = parseJson(data.toString());
      } catch {
        return;
      }
      if (m.firstMessage && !isJsonObject(msg)) return; // data.get() raises in Python: flag stays set
      if (m.firstMessage && isJsonObject(msg) && msg.type === 'feature_flags') {
        m.featureFlags = isJsonObject(msg.data) ? msg.data : {};
        this.deliver(ws, pyDumps(orderedObject([['type', 'feature_flags'], ['data', this.hooks.serverFeatures()]])));
      }
      m.firstMessage = false;
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      // ComfyUI pops sockets[sid] unconditionally (issue #16010); by default we only remove our own entry.
      if (this.faults.get().reconnectBug || this.sockets.get(sid) === ws) this.sockets.delete(sid);
      this.meta.delete(ws);
    });

    const n = this.faults.get().dropSocketAfter;
    if (n === 0 && !this.droppedSids.has(sid)) {
      this.drop(ws, m);
      return;
    }
    this.deliver(ws, pyDumps(orderedObject([['type', 'status'], ['data', orderedObject([['status', this.hooks.queueInfo()], ['sid', sid]])]])));
    const node = this.hooks.resendNodeFor(sid);
    if (node !== null) this.deliver(ws, pyDumps(orderedObject([['type', 'executing'], ['data', orderedObject([['node', node]])]])));
  }

  /** Closes every connection abruptly (process death). */
  terminateAll(): void {
    for (const ws of [...this.meta.keys()]) ws.terminate();
    this.sockets.clear();
    this.meta.clear();
  }
}
