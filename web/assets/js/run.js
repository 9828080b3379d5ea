// The run page: the DAG in its layers with each step's phase and counters, the steps as a
// table, and the selected step's log tail, all updated live from the run's watch.
import * as api from '/ui/api.js';
import { drawDag } from '/ui/dag.js';
import { h, replace, table } from '/ui/dom.js';
import { Follower } from '/ui/follow.js';
import { bytes, clock, count, phase, range, time } from '/ui/format.js';

/** Lines kept per step in the page; older ones scroll out. */
const LOG_LIMIT = 2000;

const runLink = (ns, run, step) => `#/namespaces/${encodeURIComponent(ns)}/runs/${encodeURIComponent(run)}`
  + (step ? `/steps/${encodeURIComponent(step)}` : '');

export class RunPage {
  constructor(root, ns, name, context) {
    this.root = root;
    this.ns = ns;
    this.name = name;
    this.context = context;
    this.run = null;
    this.steps = new Map();
    this.logs = new Map();
    this.selected = null;
    this.dag = null;
    this.graph = null;
    this.connection = { state: 'connecting', detail: {} };
    this.pending = false;
    this.follower = null;
  }

  /** Same page, another step: no new connection. */
  matches(ns, name) {
    return ns === this.ns && name === this.name;
  }

  async start(step) {
    this.selected = step || null;
    replace(this.root, h('p', { class: 'loading' }, `Loading run ${this.name}…`));
    // A list first: a refused token shows as a clear 401/403 here, where a WebSocket
    // handshake refused by the server would only show as a dropped connection.
    const runs = await api.runs(this.ns);
    const listed = runs.find((r) => r.name === this.name);
    if (!listed) {
      throw new api.ApiError(404, 'NotFound', `PipelineRun ${this.ns}/${this.name} does not exist (or is not served by this gateway).`);
    }
    this.apply({ type: 'snapshot', run: listed });
    this.graph = await this.pipelineGraph(listed.pipeline);
    this.layout();
    this.follower = new Follower(this.ns, this.name, (m) => this.apply(m), (state, detail) => this.state(state, detail));
    this.follower.start();
  }

  stop() {
    if (this.follower) this.follower.stop();
  }

  select(step) {
    this.selected = step || null;
    this.render();
  }

  /**
   * The layers and edges of the plan the run pinned, which stay as they were when its
   * pipeline changes; the pipeline's when there is no pinned plan to read (a local run, a
   * run not started yet); the run's steps in one layer when neither is there.
   */
  async pipelineGraph(pipeline) {
    let view = await this.optional(() => api.runGraph(this.ns, this.name), [403, 404]);
    if (!view) {
      view = await this.optional(async () => (await api.pipelines(this.ns)).find((p) => p.name === pipeline) || null, [403]);
    }
    const names = [...this.steps.keys()];
    const layers = view && view.layers.length ? view.layers.map((l) => l.filter((n) => this.steps.has(n))) : [];
    const placed = new Set(layers.flat());
    const rest = names.filter((n) => !placed.has(n));
    if (rest.length) layers.push(rest);
    return { layers: layers.filter((l) => l.length), edges: view ? view.edges : [], pipeline: view };
  }

  /** What `read` answers, or null when it is refused with one of `codes`. */
  async optional(read, codes) {
    try {
      return await read();
    } catch (error) {
      if (error instanceof api.ApiError && codes.includes(error.code)) return null;
      throw error;
    }
  }

  apply(message) {
    switch (message.type) {
      case 'snapshot':
        this.run = message.run;
        this.steps = new Map((message.run.status.steps || []).map((s) => [s.name, s]));
        // The snapshot holds the log tail the gateway still keeps: it replaces ours.
        if (message.logs) {
          this.logs = new Map();
          for (const log of message.logs) this.addLog(log);
        }
        break;
      case 'run':
        if (this.run) {
          Object.assign(this.run.status, {
            phase: message.phase, progress: message.progress,
            completionTime: message.completionTime, duration: message.duration,
          });
        }
        break;
      case 'step':
        this.steps.set(message.step.name, message.step);
        break;
      case 'counters':
        for (const c of message.steps) {
          const step = this.steps.get(c.name) || { name: c.name };
          for (const key of ['rowsRead', 'rowsWritten', 'rowsRejected', 'bytesRead', 'bytesWritten', 'watermark']) {
            if (c[key] === undefined) delete step[key];
            else step[key] = c[key];
          }
          this.steps.set(c.name, step);
        }
        break;
      case 'log':
        this.addLog(message);
        break;
      default:
        return;
    }
    this.render();
  }

  addLog({ step, attempt, lines }) {
    const kept = this.logs.get(step) || [];
    for (const line of lines) kept.push({ attempt, ...line });
    if (kept.length > LOG_LIMIT) kept.splice(0, kept.length - LOG_LIMIT);
    this.logs.set(step, kept);
  }

  state(state, detail) {
    this.connection = { state, detail };
    if (state === 'unauthorized') this.context.askToken(detail.reason || 'the token is no longer accepted');
    // A handshake that never opened may be a refused token: the list says which.
    if (state === 'reconnecting' && !detail.opened) {
      api.runs(this.ns).catch((error) => {
        if (error instanceof api.ApiError && error.code === 401) this.context.askToken(error.message);
      });
    }
    this.render();
  }

  /** Builds the page's frame once; `render` fills it. */
  layout() {
    const status = this.run.status;
    this.header = h('div');
    const dagTitle = `Steps of run ${this.name} by layer`;
    this.dag = drawDag(this.graph, (step) => runLink(this.ns, this.name, step), dagTitle);
    this.table = h('div');
    this.log = h('section', { class: 'panel', 'aria-labelledby': 'log-title' });
    replace(this.root,
      this.header,
      h('h2', { id: 'dag-title' }, 'Graph'),
      h('div', { class: 'panel dag' }, this.dag.element),
      legend(),
      h('h2', {}, 'Steps'),
      this.table,
      h('h2', { id: 'log-title' }, 'Log'),
      this.log);
    document.title = `${this.name} · ${status.phase || 'Pending'} · SynqX`;
    this.render();
  }

  render() {
    if (!this.dag || this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const status = this.run.status;
    const selected = this.selected || this.defaultStep();
    document.title = `${this.name} · ${status.phase || 'Pending'} · SynqX`;
    const pipelineHref = `#/namespaces/${encodeURIComponent(this.ns)}/pipelines/${encodeURIComponent(this.run.pipeline)}`;
    const live = {
      connecting: ['connecting…', ''], live: ['live', 'on'], reconnecting: ['reconnecting…', 'off'],
      ended: ['the run was deleted', 'off'], unauthorized: ['token refused', 'off'], forbidden: ['no right to read', 'off'],
    }[this.connection.state] || ['', ''];
    replace(this.header,
      h('h1', {}, `Run ${this.name}`, phase(status.phase), h('span', { class: ['live', live[1]], role: 'status' }, live[0])),
      h('p', { class: 'sub' }, 'Pipeline ', h('a', { href: pipelineHref }, this.run.pipeline), ` · namespace ${this.ns}`),
      h('dl', { class: 'facts' },
        fact('Progress', status.progress || '–'),
        fact('Started', time(status.startTime)),
        fact('Finished', time(status.completionTime)),
        fact('Duration', status.duration || '–'),
        status.revision ? fact('Revision', h('span', { class: 'mono' }, status.revision)) : null));
    this.dag.update(this.steps, selected);
    const names = this.graph.layers.flat();
    const rows = names.map((name) => {
      const step = this.steps.get(name) || { name };
      return [
        h('a', { href: runLink(this.ns, this.name, name), 'aria-current': name === selected ? 'true' : null }, name),
        phase(step.phase),
        step.attempt ?? '–',
        count(step.rowsRead), count(step.rowsWritten), count(step.rowsRejected),
        bytes(step.bytesRead), bytes(step.bytesWritten),
        time(step.startedAt), time(step.finishedAt),
        range(step.watermark),
        step.message ? h('div', { class: 'message' }, step.message) : '',
      ];
    });
    const columns = [
      { label: 'Step' }, { label: 'Phase' }, { label: 'Attempt', num: true },
      { label: 'Rows read', num: true }, { label: 'Rows written', num: true }, { label: 'Rejected', num: true },
      { label: 'Bytes read', num: true }, { label: 'Bytes written', num: true },
      { label: 'Started' }, { label: 'Finished' }, { label: 'Watermark' }, { label: 'Message' },
    ];
    replace(this.table, table(`Steps of run ${this.name}`, columns, rows,
      (i) => ({ class: names[i] === selected ? 'selected' : null, 'data-step': names[i] })));
    this.drawLog(selected);
  }

  drawLog(step) {
    const lines = (step && this.logs.get(step)) || [];
    const list = this.log.querySelector('ol');
    const atEnd = !list || list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    const previous = list ? list.scrollTop : 0;
    const items = lines.map((line) => h('li', {},
      h('span', { class: 'time', title: line.time }, clock(line.time)),
      h('span', { class: ['level', line.level] }, line.level || ''),
      h('span', { class: 'text' }, line.text)));
    const attempt = lines.length ? lines[lines.length - 1].attempt : null;
    const body = items.length
      ? h('ol', { class: 'log', 'aria-label': `Log of step ${step}` }, items)
      : h('p', { class: 'empty' }, step ? `No log lines of step ${step} yet.` : 'Select a step to see its log.');
    replace(this.log,
      h('div', { class: 'log-head' },
        h('p', { class: 'sub' }, step
          ? `Step ${step}${attempt ? `, attempt ${attempt}` : ''}: its last ${LOG_LIMIT} lines at most, as they arrive.`
          : '')),
      body);
    const fresh = this.log.querySelector('ol');
    if (fresh) fresh.scrollTop = atEnd ? fresh.scrollHeight : previous;
  }

  /** The step a user most likely wants: one running, else one that failed, else the first. */
  defaultStep() {
    const all = [...this.steps.values()];
    const pick = all.find((s) => s.phase === 'Running' || s.phase === 'Retrying')
      || all.find((s) => s.phase === 'Failed')
      || all[0];
    return pick ? pick.name : null;
  }
}

/** What the graph's lines mean. */
export function legend() {
  return h('p', { class: 'legend' },
    'Columns are layers: the steps of a layer may run at once. A solid arrow carries the named asset from the step that ',
    'writes it to the step that reads it; a dashed arrow is a dependsOn.');
}

function fact(label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

export { runLink };
