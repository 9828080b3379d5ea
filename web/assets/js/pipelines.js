// The pipelines page (every pipeline with its last run, schedule, next time and watermarks,
// then the namespace's recent runs) and one pipeline's page (its graph, watermarks, runs).
import * as api from '/ui/api.js';
import { drawDag } from '/ui/dag.js';
import { h, replace, table } from '/ui/dom.js';
import { phase, schedule, time } from '/ui/format.js';
import { legend, runLink } from '/ui/run.js';

const pipelineLink = (ns, name) => `#/namespaces/${encodeURIComponent(ns)}/pipelines/${encodeURIComponent(name)}`;

function ready(view) {
  if (!view.ready) return h('span', { class: 'sub' }, 'not compiled yet');
  if (view.ready.status === 'True') return 'Ready';
  return h('span', { title: view.ready.message }, `Not ready: ${view.ready.reason}`);
}

function lastRun(ns, view) {
  if (!view.lastRun) return h('span', { class: 'sub' }, 'never ran');
  return h('span', {}, h('a', { href: runLink(ns, view.lastRun.name) }, view.lastRun.name), ' ',
    phase(view.lastRun.phase), ' ', time(view.lastRun.startTime));
}

function watermarks(view) {
  const entries = Object.entries(view.watermarks || {});
  if (!entries.length) return '–';
  return h('ul', { class: 'plain' }, entries.map(([step, w]) => h('li', {},
    h('span', { class: 'mono' }, step), ': ', h('span', { class: 'mono', title: w.updatedAt || '' }, w.value))));
}

function runsTable(ns, runs, caption) {
  if (!runs.length) return h('p', { class: 'empty' }, 'No runs yet.');
  const columns = [{ label: 'Run' }, { label: 'Pipeline' }, { label: 'Phase' }, { label: 'Progress' },
    { label: 'Started' }, { label: 'Finished' }, { label: 'Duration' }];
  const rows = runs.map((r) => [
    h('a', { href: runLink(ns, r.name) }, r.name),
    h('a', { href: pipelineLink(ns, r.pipeline) }, r.pipeline),
    phase(r.status.phase),
    r.status.progress || '–',
    time(r.status.startTime || r.created),
    time(r.status.completionTime),
    r.status.duration || '–',
  ]);
  return table(caption, columns, rows);
}

/** The pipelines of a namespace and its recent runs. */
export async function pipelinesPage(root, ns) {
  const [pipelines, runs] = await Promise.all([api.pipelines(ns), api.runs(ns)]);
  document.title = `Pipelines · ${ns} · SynqX`;
  const columns = [{ label: 'Pipeline' }, { label: 'Status' }, { label: 'Schedule' }, { label: 'Next run' },
    { label: 'Last run' }, { label: 'Watermarks' }];
  const rows = pipelines.map((p) => [
    h('a', { href: pipelineLink(ns, p.name) }, p.name),
    ready(p),
    h('span', { class: 'mono' }, schedule(p.schedule)),
    time(p.nextScheduleTime),
    lastRun(ns, p),
    watermarks(p),
  ]);
  replace(root,
    h('h1', {}, 'Pipelines'),
    h('p', { class: 'sub' }, `Namespace ${ns}`),
    pipelines.length ? table(`Pipelines of ${ns}`, columns, rows) : h('p', { class: 'empty' }, `No pipelines in namespace ${ns}.`),
    h('h2', {}, 'Recent runs'),
    runsTable(ns, runs.slice(0, 25), `Recent runs of ${ns}`));
}

/** One pipeline: its facts, its graph, its watermarks and its runs. */
export async function pipelinePage(root, ns, name) {
  const [pipelines, runs] = await Promise.all([api.pipelines(ns), api.runs(ns, name)]);
  const view = pipelines.find((p) => p.name === name);
  if (!view) throw new api.ApiError(404, 'NotFound', `Pipeline ${ns}/${name} does not exist.`);
  document.title = `${name} · SynqX`;
  // A step's box leads to the step in the pipeline's last run, where its log is.
  const stepLink = (step) => (view.lastRun ? runLink(ns, view.lastRun.name, step) : pipelineLink(ns, name));
  const graph = drawDag({ layers: view.layers, edges: view.edges }, stepLink, `Steps of pipeline ${name} by layer`);
  graph.update(null, null);
  const marks = Object.entries(view.watermarks || {});
  replace(root,
    h('h1', {}, `Pipeline ${name}`),
    h('p', { class: 'sub' }, `Namespace ${ns}`),
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Status'), h('dd', {}, ready(view))),
      h('div', {}, h('dt', {}, 'Schedule'), h('dd', { class: 'mono' }, schedule(view.schedule))),
      h('div', {}, h('dt', {}, 'Next run'), h('dd', {}, time(view.nextScheduleTime))),
      h('div', {}, h('dt', {}, 'Last run'), h('dd', {}, lastRun(ns, view)))),
    h('h2', {}, 'Graph'),
    h('div', { class: 'panel dag' }, graph.element),
    legend(),
    h('h2', {}, 'Watermarks'),
    marks.length
      ? table(`Watermarks of ${name}`, [{ label: 'Step' }, { label: 'Value' }, { label: 'Committed by' }, { label: 'At' }],
        marks.map(([step, w]) => [step, h('span', { class: 'mono' }, w.value),
          w.run ? h('a', { href: runLink(ns, w.run) }, w.run) : '–', time(w.updatedAt)]))
      : h('p', { class: 'empty' }, 'No watermark committed yet.'),
    h('h2', {}, 'Runs'),
    runsTable(ns, runs, `Runs of ${name}`));
}
