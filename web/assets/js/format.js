// How numbers, sizes, times and phases read on every page.
import { h } from '/ui/dom.js';

const NUMBER = new Intl.NumberFormat('en-US');

/** `1234567` as `1,234,567`; absent as an en dash. */
export function count(n) {
  return n === undefined || n === null ? '–' : NUMBER.format(n);
}

/** Bytes in binary units, as the CLI prints them: `1.50 MiB`. */
export function bytes(n) {
  if (n === undefined || n === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(2)} ${units[unit]}`;
}

/** An RFC 3339 time as local `YYYY-MM-DD HH:MM:SS`, the exact value in its tooltip. */
export function time(value) {
  if (!value) return '–';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  const pad = (n) => String(n).padStart(2, '0');
  const text = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} `
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return h('time', { datetime: value, title: value }, text);
}

/** The clock time of a log line: `HH:MM:SS.mmm`. */
export function clock(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value || '';
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A phase as a badge; the word is always there, the colour only repeats it. */
export function phase(value) {
  const name = value || 'Pending';
  return h('span', { class: ['phase', name], 'data-phase': name }, name);
}

/** A schedule as one line: the cron expression, its time zone, and whether it is suspended. */
export function schedule(value) {
  if (!value) return 'manual';
  let text = value.cron;
  if (value.timeZone) text += ` (${value.timeZone})`;
  if (value.suspend) text += ', suspended';
  return text;
}

/** A watermark range `from → to`. */
export function range(watermark) {
  if (!watermark || (!watermark.from && !watermark.to)) return '–';
  return `${watermark.from || '(start)'} → ${watermark.to || '(none)'}`;
}
