// The DAG of a pipeline as SVG: one column per layer (the order the steps run in), a box per
// step with its phase and counters, and an arrow per edge labelled with the asset it carries
// (lineage) or dashed when it is only a `dependsOn`. Drawn once; `update` changes the boxes.
import { s } from '/ui/dom.js';
import { bytes, count } from '/ui/format.js';

const NODE_W = 210;
const NODE_H = 66;
const GAP_X = 150;
const GAP_Y = 26;
const PAD = 24;
const HEAD = 22;

/** Cuts a label to `max` characters, the whole one in its tooltip. */
function short(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Draws `graph` ({layers: [[step]], edges: [{from, to, kind, asset?, connection?, fqn?}]});
 * `link(step)` is the address of a step. Returns the element and `update(steps, selected)`.
 */
export function drawDag(graph, link, title) {
  const layers = graph.layers.length ? graph.layers : [[]];
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const width = PAD * 2 + layers.length * NODE_W + (layers.length - 1) * GAP_X;
  const height = PAD * 2 + HEAD + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const at = new Map();
  layers.forEach((layer, i) => {
    const offset = ((tallest - layer.length) * (NODE_H + GAP_Y)) / 2;
    layer.forEach((name, j) => {
      at.set(name, { x: PAD + i * (NODE_W + GAP_X), y: PAD + HEAD + offset + j * (NODE_H + GAP_Y) });
    });
  });
  const svg = s('svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-label': title,
  });
  svg.append(s('defs', {}, s('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8c97a5' }))));
  layers.forEach((_, i) => {
    svg.append(s('text', { class: 'layer', x: PAD + i * (NODE_W + GAP_X), y: PAD + 10 }, `Layer ${i + 1}`));
  });
  for (const edge of graph.edges) {
    const from = at.get(edge.from);
    const to = at.get(edge.to);
    if (!from || !to) continue;
    const x0 = from.x + NODE_W;
    const y0 = from.y + NODE_H / 2;
    const x3 = to.x - 2;
    const y3 = to.y + NODE_H / 2;
    const bend = Math.max(40, (x3 - x0) / 2);
    const lineage = edge.kind === 'lineage';
    const path = s('path', {
      class: ['edge', lineage ? 'lineage' : 'dependsOn'],
      d: `M ${x0} ${y0} C ${x0 + bend} ${y0}, ${x3 - bend} ${y3}, ${x3} ${y3}`,
      'marker-end': 'url(#arrow)',
      'data-from': edge.from,
      'data-to': edge.to,
    });
    const where = lineage ? `${edge.connection}:${edge.fqn}` : 'dependsOn';
    path.append(s('title', {}, `${edge.from} → ${edge.to}: ${edge.asset || where}`));
    svg.append(path);
    if (lineage && edge.asset) {
      // The tooltip sits beside the label, not in it, so the label's text is the name alone.
      svg.append(s('g', {}, s('title', {}, `${edge.asset} (${where})`), s('text', {
        class: 'asset', x: (x0 + x3) / 2, y: (y0 + y3) / 2 - 6, 'text-anchor': 'middle',
        'data-from': edge.from, 'data-to': edge.to,
      }, short(edge.asset, 26))));
    }
  }
  const nodes = new Map();
  for (const [name, p] of at) {
    const phaseText = s('text', { class: 'phase-text', x: 16, y: 38 });
    const detail = s('text', { class: 'detail', x: 16, y: 56 });
    const anchor = s('a', { href: link(name), 'aria-label': name },
      s('rect', { class: 'box', width: NODE_W, height: NODE_H, rx: 6 }),
      s('rect', { class: 'stripe', width: 6, height: NODE_H, rx: 3 }),
      s('title', {}, name),
      s('text', { class: 'name', x: 16, y: 20 }, short(name, 26)),
      phaseText,
      detail);
    const g = s('g', { class: 'node Pending', transform: `translate(${p.x} ${p.y})`, 'data-step': name }, anchor);
    nodes.set(name, { g, anchor, phaseText, detail });
    svg.append(g);
  }

  /** Shows each step's phase and counters; `steps` maps a name to its status (or is null). */
  function update(steps, selected) {
    for (const [name, node] of nodes) {
      // A pipeline's graph (no run): the boxes name the steps only.
      if (!steps) {
        node.g.setAttribute('class', 'node plain');
        continue;
      }
      const step = steps.get(name) || {};
      const phase = step.phase || 'Pending';
      node.g.setAttribute('class', ['node', phase, name === selected ? 'selected' : ''].join(' ').trim());
      const attempt = step.attempt && step.attempt > 1 ? ` · attempt ${step.attempt}` : '';
      node.phaseText.textContent = phase + attempt;
      const rows = step.rowsWritten ?? step.rowsRead;
      node.detail.textContent = rows === undefined ? '' : `${count(rows)} rows · ${bytes(step.bytesWritten ?? step.bytesRead ?? 0)}`;
      node.anchor.setAttribute('aria-label', `${name}: ${phase}${attempt}${rows === undefined ? '' : `, ${count(rows)} rows`}`);
      if (name === selected) node.anchor.setAttribute('aria-current', 'true');
      else node.anchor.removeAttribute('aria-current');
    }
  }

  return { element: svg, update };
}
