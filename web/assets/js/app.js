// The page's frame: routes (in the address's fragment, so the server serves one page and
// no token or data ever goes into a URL), the namespace field, the token dialog and errors.
import * as api from '/ui/api.js';
import { h, replace } from '/ui/dom.js';
import { pipelinePage, pipelinesPage } from '/ui/pipelines.js';
import { RunPage } from '/ui/run.js';

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
const dialog = document.getElementById('token-dialog');
const namespaceForm = document.getElementById('namespace-form');
const namespaceField = document.getElementById('namespace');
const forget = document.getElementById('forget-token');

let page = null;

/** What a fragment like `#/namespaces/etl/runs/orders-1/steps/load` names. */
function parse(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] !== 'namespaces' || !parts[1]) return null;
  const [, ns, kind, name, sub, step] = parts;
  if (kind === 'runs' && name) return { ns, view: 'run', name, step: sub === 'steps' ? step : null };
  if (kind === 'pipelines' && name) return { ns, view: 'pipeline', name };
  return { ns, view: 'pipelines' };
}

function link(ns, ...path) {
  return `#/${['namespaces', ns, ...path].map(encodeURIComponent).join('/')}`;
}

function showCrumbs(route) {
  const items = [h('a', { href: link(route.ns, 'pipelines') }, 'Pipelines')];
  if (route.view === 'pipeline') items.push(h('span', { 'aria-current': 'page' }, route.name));
  if (route.view === 'run') items.push(h('span', { 'aria-current': 'page' }, `Run ${route.name}`));
  const joined = [];
  items.forEach((item, i) => {
    if (i) joined.push(h('span', { class: 'sep', 'aria-hidden': 'true' }, '›'));
    joined.push(item);
  });
  replace(crumbs, joined);
}

const context = {
  askToken(why) {
    if (!api.usesToken()) return;
    document.getElementById('token-why').textContent = why || '';
    document.getElementById('token').value = '';
    if (!dialog.open) dialog.showModal();
  },
};

function showError(error) {
  const hint = {
    401: 'The gateway did not accept the token: paste another one.',
    403: 'The token is valid but may not read this: ask for get and list on pipelines and pipelineruns in this namespace.',
    404: 'Check the namespace and the name.',
  }[error.code] || '';
  replace(main, h('div', { class: 'error', role: 'alert' },
    h('strong', {}, error.code ? `${error.code} ${error.reason || ''}` : 'Error'), ': ', error.message,
    hint ? h('p', {}, hint) : null));
  if (error.code === 401) context.askToken(error.message);
}

async function route() {
  const target = parse(location.hash);
  if (!target) {
    location.replace(link(api.defaultNamespace(), 'pipelines'));
    return;
  }
  api.rememberNamespace(target.ns);
  namespaceField.value = target.ns;
  showCrumbs(target);
  if (target.view === 'run' && page instanceof RunPage && page.matches(target.ns, target.name)) {
    page.select(target.step);
    return;
  }
  if (page && page.stop) page.stop();
  page = null;
  try {
    if (target.view === 'run') {
      page = new RunPage(main, target.ns, target.name, context);
      await page.start(target.step);
    } else if (target.view === 'pipeline') {
      await pipelinePage(main, target.ns, target.name);
    } else {
      await pipelinesPage(main, target.ns);
    }
  } catch (error) {
    if (page && page.stop) page.stop();
    page = null;
    showError(error);
  }
}

async function boot() {
  let config;
  try {
    config = await api.loadConfig();
  } catch (error) {
    replace(main, h('div', { class: 'error', role: 'alert' }, error.message));
    return;
  }
  document.getElementById('server').textContent = config.title || '';
  forget.hidden = !api.usesToken();
  forget.addEventListener('click', () => {
    api.setToken('');
    if (page && page.stop) page.stop();
    page = null;
    route();
  });
  namespaceForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const ns = namespaceField.value.trim();
    if (ns) location.hash = link(ns, 'pipelines');
  });
  dialog.addEventListener('close', () => {
    if (dialog.returnValue !== 'save') return;
    api.setToken(document.getElementById('token').value);
    if (page && page.stop) page.stop();
    page = null;
    route();
  });
  window.addEventListener('hashchange', route);
  route();
}

boot();
