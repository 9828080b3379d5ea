// Follows one run over the gateway's WebSocket: every message once and in order. After a
// dropped connection it reconnects with `?since=` the last sequence number it received, so
// the gateway sends exactly what was missed (or a snapshot marked `reset` when it cannot).
import { watch } from '/ui/api.js';

const CLOSE_NORMAL = 1000;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;

export class Follower {
  /**
   * `onMessage(message)` gets each message; `onState(state, detail)` hears `live`,
   * `reconnecting` (with the close reason and whether it ever opened), `ended`,
   * `unauthorized` and `forbidden`.
   */
  constructor(ns, name, onMessage, onState) {
    this.ns = ns;
    this.name = name;
    this.onMessage = onMessage;
    this.onState = onState;
    this.since = null;
    this.failures = 0;
    this.stopped = false;
    this.socket = null;
    this.timer = null;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(CLOSE_NORMAL);
  }

  connect() {
    const { url, protocols } = watch(this.ns, this.name, this.since);
    const socket = new WebSocket(url, protocols);
    let opened = false;
    this.socket = socket;
    socket.addEventListener('open', () => {
      opened = true;
      this.failures = 0;
      this.onState('live', { since: this.since });
    });
    socket.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (typeof message.seq === 'number') this.since = message.seq;
      this.onMessage(message);
    });
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket || this.stopped) return;
      if (event.code === CLOSE_UNAUTHORIZED) return this.onState('unauthorized', { reason: event.reason });
      if (event.code === CLOSE_FORBIDDEN) return this.onState('forbidden', { reason: event.reason });
      if (event.code === CLOSE_NORMAL) return this.onState('ended', { reason: event.reason });
      this.failures += 1;
      const delay = Math.min(10000, 500 * 2 ** Math.min(this.failures, 5));
      this.onState('reconnecting', { reason: event.reason, opened, delay });
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }
}
