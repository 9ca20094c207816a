// netloop timeline page: zoom and pan the time axis, details on hover and click, group
// lanes that open. Everything it needs is in this page: the drawing (SVG above) and the
// recorded lines (the JSON block `timeline-data`).
(function () {
  'use strict';
  window.addEventListener('error', function (e) {
    document.body.setAttribute('data-error', String(e.message));
  });
  const data = JSON.parse(document.getElementById('timeline-data').textContent);
  const EV = data.events;
  const LANES = data.lanes;
  const V = data.view;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.getElementById('timeline');
  const axis = document.getElementById('axis');
  const tip = document.getElementById('tip');
  const detail = document.getElementById('detail');
  const range = document.getElementById('range');
  const width = Number(svg.getAttribute('width'));
  const laneEls = LANES.map(function (_, i) { return document.getElementById('lane' + i); });
  const zoomEls = laneEls.map(function (el) { return el.querySelector('.z'); });
  const ys = new Array(LANES.length).fill(null);
  const opened = new Set();
  let k = V.k; // zoom factor (above 1 when `--from`/`--to` asked for a window)
  let tx = V.tx; // pan, in pixels of the plot
  let height = Number(svg.getAttribute('height'));

  // What each kind of line means, for a student reading it.
  const WHY = {
    poll: 'The loop is about to sleep in epoll_wait: at most timeout_us (null: until a socket is ready), because of "why".',
    wake: 'epoll_wait returned: "events" readiness events after sleeping slept_us microseconds.',
    accept: 'A connection was accepted from "peer"; it takes slot "conn" (slots are reused once a connection is gone).',
    connected: 'An outbound connect completed (the socket became writable and SO_ERROR was 0).',
    event: 'A readiness event and its flags. Readiness is a hint: the loop reads (or writes) until WouldBlock.',
    read: 'Read "bytes" bytes from the socket and handed them to the handler.',
    discard: 'Read "bytes" bytes and dropped them (the handler was finished reading).',
    write: 'The handler sent "of" bytes; the kernel took "wrote" at once; "queued" bytes wait in this connection\'s outbound queue.',
    flush: 'The socket was writable again: "wrote" queued bytes went out, "queued" are left.',
    would_block: 'The kernel has nothing more to read, or no room to write: the loop stops here and waits for the next edge.',
    paused: 'The outbound queue passed the high watermark (--max-queue): the loop stops reading this connection, so a peer that does not read cannot make the server buffer without bound.',
    resumed: 'The queue drained below the low watermark (a quarter of --max-queue): reading resumes.',
    eof: 'The peer closed its side: a read returned 0 bytes.',
    timer: 'A loop timer came up (key: which of the handler\'s timers).',
    deadline: 'The connection\'s handler deadline passed.',
    idle: 'The idle timeout passed with no activity.',
    closing: 'The handler is done; the loop lingers so the last bytes reach the peer before the socket is closed.',
    closed: 'The connection is gone (reason); its slot can be reused.',
    datagram: 'A datagram arrived on a UDP port.',
    signal: 'A signal arrived through the signal pipe, handled between events like any I/O.',
    limit: 'The recorder reached --record-limit and stopped: nothing after this is recorded.',
    dropped: 'The disk was slower than the loop: the recorder dropped these chunks rather than make the loop wait.'
  };

  function fmtTime(us) {
    if (Math.abs(us) >= 1e6) return (us / 1e6).toFixed(6) + ' s';
    if (Math.abs(us) >= 1e3) return (us / 1e3).toFixed(3) + ' ms';
    return us.toFixed(0) + ' \u00b5s';
  }

  function niceStep(target) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(target, 1))));
    for (const m of [1, 2, 5, 10]) { if (m * power >= target) return m * power; }
    return 10 * power;
  }

  function tickLabel(us, step) {
    let div = 1; let unit = '\u00b5s';
    if (step >= 1e6) { div = 1e6; unit = 's'; } else if (step >= 1e3) { div = 1e3; unit = 'ms'; }
    const s = step / div;
    const decimals = s >= 1 ? 0 : Math.ceil(-Math.log10(s));
    return (us / div).toFixed(decimals) + ' ' + unit;
  }

  // Plot x (0 = left edge of the plot) of a time, and back.
  function xOf(t) { return tx + (t - V.start) / V.span * V.plot_w * k; }
  function tOf(x) { return V.start + (x - tx) / (V.plot_w * k) * V.span; }

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const a in attrs) e.setAttribute(a, attrs[a]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function drawAxis() {
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    const t0 = tOf(0) - V.start;
    const t1 = tOf(V.plot_w) - V.start;
    const step = niceStep((t1 - t0) * 90 / V.plot_w);
    const y = V.top - V.axis_h;
    for (let s = Math.ceil(t0 / step) * step; s <= t1; s += step) {
      const x = (V.plot_x + xOf(V.start + s)).toFixed(1);
      axis.appendChild(el('path', { d: 'M' + x + ' ' + (y + 6) + 'V' + height, stroke: '#e3e7eb', 'stroke-width': 1 }));
      axis.appendChild(el('text', { x: x, y: y + 2, 'font-size': 10, 'text-anchor': 'middle', fill: '#555' }, tickLabel(s, step)));
    }
    range.textContent = fmtTime(Math.max(0, t0)) + ' \u2013 ' + fmtTime(t1) + (k > 1 ? '  (\u00d7' + k.toFixed(k < 10 ? 1 : 0) + ')' : '');
  }

  function apply() {
    const transform = 'translate(' + (V.plot_x + tx) + ',0) scale(' + k + ',1)';
    for (const z of zoomEls) z.setAttribute('transform', transform);
    drawAxis();
  }

  function layout() {
    let y = V.top;
    LANES.forEach(function (lane, i) {
      const shown = lane.member_of === null || opened.has(lane.member_of);
      if (shown) {
        laneEls[i].setAttribute('transform', 'translate(0,' + y + ')');
        laneEls[i].removeAttribute('display');
        ys[i] = y;
        y += lane.h + V.gap;
      } else {
        laneEls[i].setAttribute('display', 'none');
        ys[i] = null;
      }
      if (lane.kind === 'group') {
        const label = laneEls[i].querySelector('.label');
        label.firstChild.nodeValue = (opened.has(i) ? '\u25be ' : '\u25b8 ') + lane.label;
      }
    });
    height = y + 8;
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    document.getElementById('background').setAttribute('height', height);
    drawAxis();
  }

  function zoomAt(factor, x) {
    const nk = Math.min(Math.max(k * factor, 1), 1e6);
    tx = x - (x - tx) * nk / k;
    k = nk;
    clampPan();
    apply();
  }

  function clampPan() {
    tx = Math.min(0, Math.max(V.plot_w - V.plot_w * k, tx));
  }

  // Where the pointer is, in the drawing's coordinates.
  function point(e) {
    const r = svg.getBoundingClientRect();
    return { x: (e.clientX - r.left) * width / r.width, y: (e.clientY - r.top) * height / r.height };
  }

  function laneAt(y) {
    for (let i = 0; i < LANES.length; i++) {
      if (ys[i] !== null && y >= ys[i] && y < ys[i] + LANES[i].h + V.gap) return i;
    }
    return -1;
  }

  // The lane's event nearest to time t (binary search: indices are in time order).
  function nearest(list, t) {
    let lo = 0; let hi = list.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (EV[list[mid]].t < t) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(EV[list[lo - 1]].t - t) <= Math.abs(EV[list[lo]].t - t)) lo -= 1;
    return lo;
  }

  function describe(e) {
    const lines = ['<b>' + escapeHtml(String(e.kind)) + '</b> at ' + fmtTime(e.t - V.start)];
    const fields = [];
    for (const key in e) {
      if (key !== 't' && key !== 'kind') fields.push(key + ': ' + JSON.stringify(e[key]));
    }
    if (fields.length) lines.push(escapeHtml(fields.join('  ')));
    let text = lines.join('\n');
    if (WHY[e.kind]) text += '<span class="why">' + WHY[e.kind] + '</span>';
    return text;
  }

  function escapeHtml(s) {
    return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }

  // What is under the pointer: a lane's nearest event within 6 pixels, or the sleep.
  function under(p) {
    const i = laneAt(p.y);
    if (i < 0 || p.x < V.plot_x) return null;
    const lane = LANES[i];
    const t = tOf(p.x - V.plot_x);
    const j = nearest(lane.events, t);
    if (j < 0) return null;
    const e = EV[lane.events[j]];
    const px = Math.abs(xOf(e.t) - (p.x - V.plot_x));
    const head = escapeHtml(lane.label) + '\n';
    if (px <= 6) return head + describe(e);
    if (lane.kind === 'loop') {
      // Inside a sleep: the poll before the pointer and the wake after it.
      let a = j;
      if (EV[lane.events[a]].t > t && a > 0) a -= 1;
      const poll = EV[lane.events[a]];
      const wake = a + 1 < lane.events.length ? EV[lane.events[a + 1]] : null;
      if (poll.kind === 'poll' && wake && wake.kind === 'wake' && poll.t <= t && t <= wake.t) {
        return head + 'asleep for ' + fmtTime(wake.t - poll.t) + '\n' + describe(poll) + '\n' + describe(wake);
      }
    }
    return null;
  }

  function show(html, e) {
    tip.innerHTML = html;
    tip.style.display = 'block';
    const w = tip.offsetWidth;
    const left = e.clientX + 14 + w > window.innerWidth ? e.clientX - w - 14 : e.clientX + 14;
    tip.style.left = Math.max(0, left) + 'px';
    tip.style.top = (e.clientY + 16) + 'px';
  }

  let drag = null;
  svg.addEventListener('pointerdown', function (e) {
    drag = { x: e.clientX, tx: tx, moved: false };
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener('pointermove', function (e) {
    if (drag) {
      const dx = (e.clientX - drag.x) * width / svg.getBoundingClientRect().width;
      if (Math.abs(dx) > 3) drag.moved = true;
      if (drag.moved) {
        tx = drag.tx + dx;
        clampPan();
        apply();
        tip.style.display = 'none';
        return;
      }
    }
    const found = under(point(e));
    if (found) show(found, e); else tip.style.display = 'none';
  });
  svg.addEventListener('pointerup', function (e) {
    const click = drag && !drag.moved;
    drag = null;
    if (!click) return;
    const p = point(e);
    const i = laneAt(p.y);
    if (i >= 0 && p.x < V.plot_x && LANES[i].kind === 'group') {
      if (opened.has(i)) opened.delete(i); else opened.add(i);
      layout();
      return;
    }
    const found = under(p);
    if (found) detail.innerHTML = found;
  });
  svg.addEventListener('pointerleave', function () { tip.style.display = 'none'; });
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    const p = point(e);
    zoomAt(Math.exp(-e.deltaY * 0.002), Math.min(Math.max(p.x - V.plot_x, 0), V.plot_w));
  }, { passive: false });
  svg.addEventListener('dblclick', function () { k = 1; tx = 0; apply(); });

  function button(id, f) {
    const b = document.getElementById(id);
    if (b) b.addEventListener('click', f);
  }
  button('zoom-in', function () { zoomAt(2, V.plot_w / 2); });
  button('zoom-out', function () { zoomAt(0.5, V.plot_w / 2); });
  button('reset', function () { k = 1; tx = 0; apply(); });
  button('open-all', function () {
    LANES.forEach(function (lane, i) { if (lane.kind === 'group') opened.add(i); });
    layout();
  });
  button('close-all', function () { opened.clear(); layout(); });

  clampPan();
  LANES.forEach(function (lane, i) {
    if (lane.kind === 'group') laneEls[i].querySelector('.label').setAttribute('class', 'label group-label');
  });
  layout();
  apply();
  document.body.setAttribute('data-ready', String(EV.length));
})();
