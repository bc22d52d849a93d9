// bertq dashboard: reads the gateway's server-sent events (GET events) and draws SVG charts.
// No framework, no build step, nothing from the network but the gateway itself: a charting library
// would be a bundle to build and ship for five line charts, and the page must work offline.

(() => {
  const TOKEN_KEY = 'bertq-gateway-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const COLORS = ['var(--c1)', 'var(--c2)', 'var(--c3)', 'var(--c4)', 'var(--c5)', 'var(--c6)'];
  const ERROR_COLORS = {
    BAD_REQUEST: 'var(--c3)',
    TOO_LARGE: 'var(--c4)',
    TOO_LONG: 'var(--c6)',
    OVERLOADED: 'var(--warn)',
    NO_WORKERS: 'var(--bad)',
    TIMEOUT: 'var(--c5)',
    UNAUTHORIZED: 'var(--c1)',
    INTERNAL: '#ff9e9e',
    MODEL_ERROR: '#ffb3d9',
  };
  const MAX_POINTS = 600;

  const state = { history: [], fleet: null, windowS: 120, lastEventAt: 0, connected: false };
  const $ = (id) => document.getElementById(id);

  // ---- formatting ------------------------------------------------------------------------------

  function fmt(v, digits) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
    if (a >= 100) return Math.round(v).toLocaleString('en-US');
    if (a >= 10) return v.toFixed(digits === undefined ? 1 : digits);
    return v.toFixed(digits === undefined ? 2 : digits);
  }
  const fmtMs = (v) => (v === null || v === undefined ? '–' : v >= 1000 ? `${fmt(v / 1000)} s` : `${fmt(v)} ms`);
  const fmtDuration = (s) =>
    s === null
      ? '–'
      : s < 120
        ? `${Math.round(s)} s`
        : s < 7200
          ? `${Math.round(s / 60)} min`
          : `${(s / 3600).toFixed(1)} h`;

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children || []) e.append(c);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // ---- charts ----------------------------------------------------------------------------------

  /** Axis labels: whole numbers where they are whole, ms switching to s past a second. */
  function tickLabel(v, unit) {
    const short = (n) => (n % 1 === 0 ? String(n) : n.toFixed(n < 1 ? 2 : 1));
    if (unit === 'ms') return v === 0 ? '0' : v >= 1000 ? `${short(v / 1000)}s` : `${short(v)}ms`;
    return v >= 1e4 ? `${short(v / 1000)}k` : short(v);
  }

  /** Round axis maximum and ~4 ticks for values up to `max`. */
  function niceScale(max) {
    if (!(max > 0)) return { max: 1, ticks: [0, 0.5, 1] };
    const raw = max / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const top = Math.ceil(max / step) * step;
    const ticks = [];
    for (let t = 0; t <= top + step / 2; t += step) ticks.push(t);
    return { max: top, ticks };
  }

  /**
   * Draws series over time into a figure: lines (optionally stacked areas) or stacked bars.
   * series: [{ key, label, color, values: [number|null per point], dashed, unit }]
   */
  function drawChart(figure, opts) {
    const box = figure.querySelector('svg');
    const width = Math.max(260, box.clientWidth || 420);
    const height = box.clientHeight || 190;
    box.setAttribute('viewBox', `0 0 ${width} ${height}`);
    box.replaceChildren();
    const pad = { l: 44, r: 10, t: 8, b: 20 };
    const w = width - pad.l - pad.r;
    const h = height - pad.t - pad.b;
    const times = opts.times;
    const now = times.length ? times[times.length - 1] : Date.now();
    const t0 = now - state.windowS * 1000;
    const x = (t) => pad.l + ((t - t0) / (state.windowS * 1000)) * w;

    // Totals per point decide the axis when stacked.
    let max = 0;
    for (let i = 0; i < times.length; i++) {
      if (times[i] < t0) continue;
      let stack = 0;
      for (const s of opts.series) {
        const v = s.values[i];
        if (v === null || v === undefined) continue;
        if (opts.stacked) stack += v;
        else max = Math.max(max, v);
      }
      max = Math.max(max, stack);
    }
    const scale = niceScale(max);
    const y = (v) => pad.t + h - (v / scale.max) * h;

    for (const tick of scale.ticks) {
      box.append(svg('line', { x1: pad.l, x2: pad.l + w, y1: y(tick), y2: y(tick), class: 'gridline' }));
      const label = svg('text', { x: pad.l - 6, y: y(tick) + 3.5, 'text-anchor': 'end' });
      label.textContent = tickLabel(tick, opts.unit);
      box.append(label);
    }
    for (let k = 0; k <= 4; k++) {
      const t = t0 + (k / 4) * state.windowS * 1000;
      const secondsAgo = Math.round((now - t) / 1000);
      const label = svg('text', {
        x: x(t),
        y: height - 5,
        'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle',
      });
      label.textContent =
        secondsAgo === 0
          ? 'now'
          : `-${secondsAgo >= 60 && secondsAgo % 60 === 0 ? `${secondsAgo / 60}m` : `${secondsAgo}s`}`;
      box.append(label);
    }

    const visible = [];
    for (let i = 0; i < times.length; i++) if (times[i] >= t0) visible.push(i);
    if (visible.length === 0) {
      const empty = svg('text', { x: pad.l + w / 2, y: pad.t + h / 2, 'text-anchor': 'middle', class: 'empty' });
      empty.textContent = 'waiting for data';
      box.append(empty);
      return;
    }

    if (opts.bars) {
      const barW = Math.max(1.5, (w / state.windowS) * 0.8);
      for (const i of visible) {
        let base = 0;
        for (const s of opts.series) {
          const v = s.values[i] || 0;
          if (v <= 0) continue;
          box.append(
            svg('rect', {
              x: x(times[i]) - barW / 2,
              y: y(base + v),
              width: barW,
              height: Math.max(1, y(base) - y(base + v)),
              fill: s.color,
              rx: 1,
            }),
          );
          base += v;
        }
      }
      return;
    }

    const below = new Array(times.length).fill(0);
    for (const s of opts.series) {
      // Split into runs of known values, so a gap (no data) is drawn as a gap.
      const runs = [];
      let run = [];
      for (const i of visible) {
        const v = s.values[i];
        if (v === null || v === undefined) {
          if (run.length) runs.push(run);
          run = [];
          continue;
        }
        const top = opts.stacked ? below[i] + v : v;
        run.push([x(times[i]), y(top), y(opts.stacked ? below[i] : 0)]);
        if (opts.stacked) below[i] = top;
      }
      if (run.length) runs.push(run);
      for (const r of runs) {
        const line = r.map((p, j) => `${j ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join('');
        if (opts.stacked || s.fill) {
          const back = r
            .slice()
            .reverse()
            .map((p) => `L${p[0].toFixed(1)},${p[2].toFixed(1)}`)
            .join('');
          box.append(
            svg('path', {
              d: `${line + back}Z`,
              fill: s.color,
              'fill-opacity': opts.stacked ? 0.55 : 0.12,
              stroke: 'none',
            }),
          );
        }
        const attrs = {
          d: line,
          fill: 'none',
          stroke: s.color,
          'stroke-width': 1.8,
          'stroke-linejoin': 'round',
          'data-series': s.key,
        };
        if (s.dashed) attrs['stroke-dasharray'] = '4 3';
        box.append(svg('path', attrs));
        if (r.length === 1) box.append(svg('circle', { cx: r[0][0], cy: r[0][1], r: 2.5, fill: s.color }));
      }
    }
  }

  /** Legend with each series' latest value; also records latest and peak values on the figure for tests and tooling. */
  function legend(figure, series, format) {
    const target = figure.querySelector('.legend');
    target.replaceChildren();
    const latest = {};
    const peak = {};
    for (const s of series) {
      let last = null;
      let top = 0;
      for (let i = s.values.length - 1; i >= 0; i--) {
        const v = s.values[i];
        if (v === null || v === undefined) continue;
        if (last === null) last = v;
        if (v > top) top = v;
      }
      latest[s.key] = last;
      peak[s.key] = top;
      target.append(
        el('span', { class: 'item' }, [
          el('span', { class: 'swatch', style: `background:${s.color}` }),
          el('span', { text: s.label }),
          el('span', { class: 'value', text: format(last) }),
        ]),
      );
    }
    figure.dataset.latest = JSON.stringify(latest);
    figure.dataset.peak = JSON.stringify(peak);
  }

  function renderCharts() {
    const pts = state.history;
    const times = pts.map((p) => p.t);
    const col = (f) => pts.map(f);

    const throughput = [
      { key: 'rows', label: 'rows/s (gateway)', color: COLORS[1], values: col((p) => p.rows), fill: true },
      { key: 'fleetRows', label: 'rows/s (fleet)', color: COLORS[0], values: col((p) => p.fleetRows), dashed: true },
      { key: 'requests', label: 'requests/s', color: COLORS[2], values: col((p) => p.requests) },
    ];
    const figT = $('chart-throughput');
    drawChart(figT, { times, series: throughput });
    legend(figT, throughput, (v) => fmt(v));

    const latency = [
      { key: 'p50', label: 'p50', color: COLORS[1], values: col((p) => p.p50) },
      { key: 'p95', label: 'p95', color: COLORS[2], values: col((p) => p.p95) },
      { key: 'p99', label: 'p99', color: COLORS[4], values: col((p) => p.p99) },
    ];
    const figL = $('chart-latency');
    drawChart(figL, { times, series: latency, unit: 'ms' });
    legend(figL, latency, fmtMs);

    const stages = [
      {
        key: 'tokenization',
        label: 'tokenization',
        color: COLORS[3],
        values: col((p) => (p.stages ? p.stages.tokenization : null)),
      },
      { key: 'queue', label: 'queue', color: COLORS[2], values: col((p) => (p.stages ? p.stages.queue : null)) },
      {
        key: 'inference',
        label: 'inference',
        color: COLORS[0],
        values: col((p) => (p.stages ? p.stages.inference : null)),
      },
    ];
    const figS = $('chart-stages');
    drawChart(figS, { times, series: stages, unit: 'ms', stacked: true });
    legend(figS, stages, fmtMs);

    const queue = [
      { key: 'queue', label: 'jobs queued', color: COLORS[3], values: col((p) => p.queue), fill: true },
      { key: 'inFlight', label: 'requests in flight', color: COLORS[5], values: col((p) => p.inFlight) },
    ];
    const figQ = $('chart-queue');
    drawChart(figQ, { times, series: queue });
    legend(figQ, queue, (v) => fmt(v, 0));

    const codes = new Set();
    for (const p of pts) for (const c of Object.keys(p.errors || {})) codes.add(c);
    const errors = [...codes].sort().map((code, i) => ({
      key: code,
      label: code,
      color: ERROR_COLORS[code] || COLORS[i % COLORS.length],
      values: col((p) => p.errors?.[code] || 0),
    }));
    const figE = $('chart-errors');
    drawChart(figE, { times, series: errors, bars: true, stacked: true });
    legend(figE, errors, (v) => fmt(v, 0));
    if (errors.length === 0) figE.querySelector('.legend').append(el('span', { class: 'item', text: 'no errors' }));
  }

  // ---- fleet panels ----------------------------------------------------------------------------

  function renderFleet() {
    const f = state.fleet;
    if (!f) return;
    $('service').textContent = f.service;
    const pill = $('fleet-state');
    const ready = f.workers.filter((w) => w.state === 'ready').length;
    if (!f.ok) {
      pill.className = 'pill bad';
      pill.textContent = f.error ? f.error.code : 'no status';
      pill.title = f.error ? f.error.message : '';
    } else {
      pill.className = ready === f.workers.length ? 'pill ok' : 'pill warn';
      pill.textContent = `${ready}/${f.workers.length} ready`;
      pill.title = '';
    }

    const m = f.model;
    $('model-name').textContent = m ? m.name : f.ok ? '' : f.error?.message || '';
    const chips = $('config');
    chips.replaceChildren();
    if (m) {
      const facts = [
        ['pooling', m.pooling],
        ['layer', m.poolingLayer.join(', ')],
        ['max_seq_len', m.maxSeqLen === null ? 'NONE' : String(m.maxSeqLen)],
        ['dims', m.dims === null ? 'varies' : String(m.dims)],
        ['layers', m.layers === null ? '–' : String(m.layers)],
        ['batch', String(m.maxBatchSize)],
        ['format', m.format || '–'],
        ['precision', m.fp16 ? 'fp16' : 'fp32'],
        ['normalize', m.normalize ? 'yes' : 'no'],
      ];
      for (const [k, v] of facts)
        chips.append(
          el('div', { class: 'chip', dataset: { key: k } }, [
            el('span', { class: 'k', text: k }),
            el('span', { class: 'v', text: v }),
          ]),
        );
    }

    const list = $('workers');
    list.replaceChildren();
    $('worker-count').textContent = String(f.workers.length);
    $('workers-empty').hidden = f.workers.length > 0;
    const fastest = Math.max(1, ...f.workers.map((w) => w.rowsPerSecond));
    for (const w of f.workers) {
      const bar = el('div', { class: 'bar', title: `${fmt(w.rowsPerSecond)} rows/s` }, [
        el('span', { style: `width:${Math.max(2, (100 * w.rowsPerSecond) / fastest)}%` }),
      ]);
      const meta = `${fmt(w.rowsPerSecond)} rows/s · inference p50 ${fmtMs(w.inferenceP50Ms)} · batch ${fmt(w.avgBatchRows, 1)} rows · ${fmt(w.rowsTotal, 0)} rows total · up ${fmtDuration(w.uptimeS)}`;
      list.append(
        el('li', { class: 'worker', dataset: { workerId: w.id, device: w.device, state: w.state } }, [
          el('span', { class: 'id', text: w.id, title: w.id }),
          el('span', { class: 'badges' }, [
            el('span', { class: 'badge device', text: w.device }),
            el('span', { class: `badge ${w.state}`, text: w.state }),
          ]),
          bar,
          el('span', { class: 'meta', text: meta }),
        ]),
      );
    }
  }

  function render() {
    renderFleet();
    renderCharts();
    const ago = state.lastEventAt ? Math.round((Date.now() - state.lastEventAt) / 1000) : null;
    $('updated').textContent = state.connected
      ? `live · updated ${ago === null || ago < 2 ? 'just now' : `${ago} s ago`}`
      : 'reconnecting…';
  }

  // ---- event stream ----------------------------------------------------------------------------

  function onEvent(name, data) {
    state.lastEventAt = Date.now();
    if (name === 'snapshot') {
      state.history = data.history;
      state.fleet = data.fleet;
    } else if (name === 'tick') {
      state.history.push(data.point);
      if (state.history.length > MAX_POINTS) state.history.splice(0, state.history.length - MAX_POINTS);
      state.fleet = data.fleet;
    }
    render();
  }

  /** Reads the SSE stream with fetch, so a bearer token can ride along (EventSource cannot send headers). */
  async function stream() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: 'text/event-stream' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch('events', { headers, cache: 'no-store' });
    if (res.status === 401) {
      $('login').hidden = false;
      state.connected = false;
      render();
      return 'login';
    }
    if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
    $('login').hidden = true;
    state.connected = true;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) name = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
    return 'ended';
  }

  async function connectForever() {
    let delay = 1000;
    for (;;) {
      try {
        const outcome = await stream();
        if (outcome === 'login') return;
        delay = 1000;
      } catch (err) {
        console.warn('bertq dashboard:', err);
      }
      state.connected = false;
      render();
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(10000, delay * 2);
    }
  }

  // ---- wiring ----------------------------------------------------------------------------------

  for (const b of document.querySelectorAll('[data-window]')) {
    b.addEventListener('click', () => {
      state.windowS = Number(b.dataset.window);
      for (const o of document.querySelectorAll('[data-window]')) o.classList.toggle('on', o === b);
      render();
    });
  }
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    connectForever();
  });
  window.addEventListener('resize', () => renderCharts());
  setInterval(() => {
    if (state.connected) render();
  }, 5000);
  render();
  connectForever();
})();
