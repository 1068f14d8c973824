'use strict';
/*
 * deploy/demo/dashboard/app.js - the dashboard's logic, no framework.
 *
 * Two EventSource streams from sluice:
 *   /plant   (or /plant/<line>)  json events of factory/<line>/<sensor>/<measure>
 *            -> one card per sensor and a hand-drawn line chart of temperatures
 *   /orders  events named after their channel ("orders:eu", ...)
 *            -> an order ticker and totals per region
 *
 * What the page shows about each stream: its state (connecting, open,
 * reconnecting, closed), the last event id, the event count and how often
 * it reconnected. The browser resumes by itself: it sends Last-Event-ID,
 * and sluice replays what was missed. When sluice cannot prove that
 * nothing is missing it starts with `event: reset`; the page then drops
 * what it shows, says "history reset: <reason>", and rebuilds from the
 * snapshot and live events that follow.
 *
 * When the browser gives up on its own (an HTTP error: a proxy answering
 * 502 while sluice restarts), the page probes the URL with HEAD and opens
 * a new EventSource with ?lastEventId=, unless sluice says the stream is
 * gone for good (204, 401, 403, 404).
 */
(function () {
    const params = new URLSearchParams(location.search);
    const configured = window.SLUICE_CONFIG && window.SLUICE_CONFIG.url;
    const SLUICE = (params.get('sluice') || configured ||
        `${location.protocol}//${location.hostname}:8080`).replace(/\/+$/, '');
    const LINE = params.get('line');
    const REGIONS = ['eu', 'us', 'apac'];
    const CHART_SPAN_MS = 120000;
    const TICKER_MAX = 14;
    const HOT_C = 80;
    const COLORS = ['#4cc9f0', '#f9c74f', '#90be6d', '#f3722c', '#c77dff', '#43aa8b',
        '#f94144', '#577590'];

    function byId(id) {
        return document.getElementById(id);
    }

    function el(tag, className, text) {
        const node = document.createElement(tag);
        if (className) {
            node.className = className;
        }
        if (text !== undefined) {
            node.textContent = text;
        }
        return node;
    }

    /* Restarts a CSS animation on `node` (remove, reflow, add). */
    function flash(node) {
        node.classList.remove('flash');
        void node.offsetWidth;
        node.classList.add('flash');
    }

    /* ---------------------------------------------------------------- */
    /* Notice: one banner for "history reset" (and other rare news).     */

    const notice = {
        box: byId('notice'),
        text: byId('notice-text'),
        streams: new Set(),
        reason: '',

        show(reason, streamPath) {
            if (this.box.hidden || reason !== this.reason) {
                this.streams.clear();
            }
            this.reason = reason;
            this.streams.add(streamPath);
            const when = new Date().toLocaleTimeString();
            this.text.textContent = `history reset: ${reason} (${[...this.streams].join(', ')}, ` +
                `${when}); the page cleared its data and rebuilt it from the stream.`;
            this.box.hidden = false;
        },

        hide() {
            this.box.hidden = true;
            this.streams.clear();
        },
    };
    byId('notice-close').addEventListener('click', () => notice.hide());

    /* ---------------------------------------------------------------- */
    /* Streams                                                            */

    /*
     * Opens `path` on sluice and keeps it open. `handlers` maps event
     * names to functions called with the parsed JSON data; `onReset` is
     * called with the reset's {reason, last_id} before the page rebuilds.
     */
    function openStream(name, path, handlers, onReset) {
        const view = {
            badge: byId(`status-${name}`),
            lastId: byId(`lastid-${name}`),
            events: byId(`events-${name}`),
            reconnects: byId(`reconnects-${name}`),
        };
        const s = { es: null, opened: false, lastId: '', events: 0, reconnects: 0,
            probeDelayMs: 1000, timer: null };
        byId(`path-${name}`).textContent = path;

        function setState(state) {
            view.badge.dataset.state = state;
            view.badge.textContent = state;
        }

        function seen(e) {
            if (e.lastEventId) {
                s.lastId = e.lastEventId;
                view.lastId.textContent = s.lastId;
                view.lastId.title = s.lastId;
            }
            s.events++;
            view.events.textContent = String(s.events);
        }

        function listen(es, type, fn) {
            es.addEventListener(type, (e) => {
                seen(e);
                let data;
                try {
                    data = JSON.parse(e.data);
                } catch {
                    return;
                }
                fn(data, e);
            });
        }

        /* The browser closed the stream for good: ask what the URL says
         * now and open a new one if it may come back. */
        function probe() {
            fetch(SLUICE + path, { method: 'HEAD', cache: 'no-store' })
                .then((res) => {
                    if ([204, 401, 403, 404].includes(res.status)) {
                        setState('closed');
                        view.badge.title = `sluice answered ${res.status}`;
                        return;
                    }
                    if (res.ok) {
                        connect();
                        return;
                    }
                    retryLater(); /* 502/503 from a proxy: sluice is not back yet */
                })
                .catch(() => retryLater());
        }

        function retryLater() {
            clearTimeout(s.timer);
            s.timer = setTimeout(probe, s.probeDelayMs);
            s.probeDelayMs = Math.min(s.probeDelayMs * 2, 15000);
        }

        function connect() {
            let url = SLUICE + path;
            if (s.lastId) {
                url += `${url.includes('?') ? '&' : '?'}lastEventId=${encodeURIComponent(s.lastId)}`;
            }
            const es = new EventSource(url);
            s.es = es;
            es.onopen = () => {
                if (s.opened) {
                    s.reconnects++;
                    view.reconnects.textContent = String(s.reconnects);
                }
                s.opened = true;
                s.probeDelayMs = 1000;
                setState('open');
            };
            es.onerror = () => {
                if (es.readyState === EventSource.CLOSED) {
                    es.close();
                    setState(s.opened ? 'reconnecting' : 'connecting');
                    retryLater();
                    return;
                }
                setState(s.opened ? 'reconnecting' : 'connecting');
            };
            for (const [type, fn] of Object.entries(handlers)) {
                listen(es, type, fn);
            }
            listen(es, 'reset', (info) => {
                onReset(info);
                notice.show(info.reason || 'unknown', path);
            });
        }

        setState('connecting');
        connect();
        return s;
    }

    /* ---------------------------------------------------------------- */
    /* Sensor cards                                                       */

    const cardsBox = byId('cards');
    const cards = new Map(); /* "line/sensor" -> card */
    const sensorKeys = []; /* every key seen, sorted; kept across resets */

    /* Colours follow the sorted sensor keys, so a sensor keeps its colour
     * across reloads and resets whatever order the events come in. */
    function colorFor(key) {
        const i = sensorKeys.indexOf(key);
        return COLORS[(i < 0 ? 0 : i) % COLORS.length];
    }

    /* Registers a key; on a new one, repaints the dots already shown. */
    function noteSensor(key) {
        if (sensorKeys.includes(key)) {
            return;
        }
        sensorKeys.push(key);
        sensorKeys.sort();
        for (const [k, card] of cards) {
            card.dot.style.background = colorFor(k);
        }
        chart.renderLegend();
    }

    function makeReading(kind, unit) {
        const box = el('div', `reading ${kind}`);
        box.append(el('span', 'value', '-'), el('span', 'unit', unit));
        return box;
    }

    function makeCard(key, line, sensor) {
        const node = el('article', 'card');
        node.dataset.sensor = key;
        const head = el('header');
        const dot = el('span', 'dot');
        dot.style.background = colorFor(key);
        head.append(dot, el('h3', null, sensor), el('span', 'line', `line ${line}`));
        const temperature = makeReading('temperature', '\u00b0C');
        const pressure = makeReading('pressure', 'bar');
        const foot = el('footer');
        const age = el('span', 'age', 'no data');
        const retained = el('span', 'tag', 'retained');
        retained.hidden = true;
        foot.append(age, retained);
        node.append(head, temperature, pressure, foot);
        return { node, dot, temperature, pressure, age, retained, updated: 0 };
    }

    /* Returns the card for `key`, creating it in sorted position. */
    function cardFor(key, line, sensor) {
        let card = cards.get(key);
        if (card) {
            return card;
        }
        card = makeCard(key, line, sensor);
        cards.set(key, card);
        byId('cards-empty').hidden = true;
        const after = [...cards.keys()].sort().find((k) => k > key);
        cardsBox.insertBefore(card.node, after ? cards.get(after).node : null);
        return card;
    }

    function showReading(card, measure, value, retained) {
        const box = measure === 'temperature' ? card.temperature : card.pressure;
        const valueNode = box.querySelector('.value');
        valueNode.textContent = value.toFixed(measure === 'temperature' ? 1 : 2);
        flash(valueNode);
        if (measure === 'temperature') {
            card.node.classList.toggle('hot', value >= HOT_C);
        }
        card.updated = Date.now();
        card.retained.hidden = !retained;
        card.age.textContent = 'just now';
    }

    function onReading(msg) {
        const m = /^factory\/([^/]+)\/([^/]+)\/(temperature|pressure)$/.exec(msg.topic || '');
        const payload = msg.payload;
        if (!m || !payload || typeof payload.value !== 'number') {
            return;
        }
        const [, line, sensor, measure] = m;
        const key = `${line}/${sensor}`;
        noteSensor(key);
        showReading(cardFor(key, line, sensor), measure, payload.value, msg.retain === true);
        if (measure === 'temperature') {
            const t = Date.parse(msg.time);
            chart.add(key, Number.isNaN(t) ? Date.now() : t, payload.value);
        }
    }

    function clearCards() {
        for (const card of cards.values()) {
            card.node.remove();
        }
        cards.clear();
        byId('cards-empty').hidden = false;
    }

    setInterval(() => {
        const now = Date.now();
        for (const card of cards.values()) {
            if (card.updated) {
                const s = Math.round((now - card.updated) / 1000);
                card.age.textContent = s < 2 ? 'just now' : `updated ${s}s ago`;
                card.node.classList.toggle('stale', s >= 15);
            }
        }
    }, 1000);

    /* ---------------------------------------------------------------- */
    /* Chart: one line per sensor, time on x, shared y axis, drawn by     */
    /* hand on a canvas at the device's pixel ratio.                       */

    const chart = {
        canvas: byId('chart'),
        legend: byId('legend'),
        series: new Map(), /* key -> [{t, v}], oldest first */
        dirty: true,

        add(key, t, v) {
            if (!this.series.has(key)) {
                this.series.set(key, []);
                this.renderLegend();
            }
            const points = this.series.get(key);
            points.push({ t, v });
            const oldest = Date.now() - CHART_SPAN_MS - 10000;
            while (points.length > 0 && points[0].t < oldest) {
                points.shift();
            }
            this.dirty = true;
        },

        clear() {
            this.series.clear();
            this.renderLegend();
            this.dirty = true;
        },

        renderLegend() {
            this.legend.replaceChildren();
            for (const key of [...this.series.keys()].sort()) {
                const item = el('span', 'item');
                const dot = el('span', 'dot');
                dot.style.background = colorFor(key);
                item.append(dot, document.createTextNode(key));
                this.legend.append(item);
            }
        },

        /* Round numbers for the y axis: a step of 1, 2 or 5 x 10^n. */
        niceStep(range) {
            const raw = range / 4;
            const mag = Math.pow(10, Math.floor(Math.log10(raw)));
            const norm = raw / mag;
            return (norm < 1.5 ? 1 : norm < 3.5 ? 2 : 5) * mag;
        },

        yRange(now) {
            let lo = Infinity;
            let hi = -Infinity;
            for (const points of this.series.values()) {
                for (const p of points) {
                    if (p.t >= now - CHART_SPAN_MS) {
                        lo = Math.min(lo, p.v);
                        hi = Math.max(hi, p.v);
                    }
                }
            }
            if (lo === Infinity) {
                return null;
            }
            const pad = Math.max((hi - lo) * 0.1, 1);
            const step = this.niceStep(hi - lo + 2 * pad);
            return { lo: Math.floor((lo - pad) / step) * step,
                hi: Math.ceil((hi + pad) / step) * step, step };
        },

        draw() {
            const c = this.canvas;
            const ratio = window.devicePixelRatio || 1;
            const w = c.clientWidth;
            const h = c.clientHeight;
            if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
                c.width = Math.round(w * ratio);
                c.height = Math.round(h * ratio);
            }
            const g = c.getContext('2d');
            g.setTransform(ratio, 0, 0, ratio, 0, 0);
            g.clearRect(0, 0, w, h);
            const box = { left: 44, right: w - 12, top: 10, bottom: h - 24 };
            const now = Date.now();
            const range = this.yRange(now);
            g.font = '11px system-ui, sans-serif';
            g.fillStyle = '#7d8a99';
            if (!range) {
                g.fillText('waiting for data', box.left + 8, box.top + 20);
                return;
            }
            const x = (t) => box.left + ((t - (now - CHART_SPAN_MS)) / CHART_SPAN_MS) *
                (box.right - box.left);
            const y = (v) => box.bottom - ((v - range.lo) / (range.hi - range.lo)) *
                (box.bottom - box.top);
            this.drawGrid(g, box, range, x, y, now);
            this.drawLines(g, box, x, y);
        },

        drawGrid(g, box, range, x, y, now) {
            g.strokeStyle = '#2a3340';
            g.lineWidth = 1;
            g.textAlign = 'right';
            g.textBaseline = 'middle';
            for (let v = range.lo; v <= range.hi + range.step / 2; v += range.step) {
                const py = Math.round(y(v)) + 0.5;
                g.beginPath();
                g.moveTo(box.left, py);
                g.lineTo(box.right, py);
                g.stroke();
                g.fillText(`${Number(v.toFixed(1))}\u00b0`, box.left - 6, py);
            }
            g.textAlign = 'center';
            g.textBaseline = 'top';
            for (let s = 0; s <= CHART_SPAN_MS / 1000; s += 30) {
                const px = Math.round(x(now - s * 1000)) + 0.5;
                g.beginPath();
                g.moveTo(px, box.top);
                g.lineTo(px, box.bottom);
                g.stroke();
                g.fillText(s === 0 ? 'now' : `-${s}s`, px, box.bottom + 6);
            }
        },

        drawLines(g, box, x, y) {
            g.save();
            g.beginPath();
            g.rect(box.left, box.top - 4, box.right - box.left, box.bottom - box.top + 8);
            g.clip();
            g.lineWidth = 2;
            g.lineJoin = 'round';
            for (const [key, points] of this.series) {
                if (points.length === 0) {
                    continue;
                }
                g.strokeStyle = colorFor(key);
                g.beginPath();
                points.forEach((p, i) => (i === 0 ? g.moveTo(x(p.t), y(p.v)) : g.lineTo(x(p.t), y(p.v))));
                g.stroke();
                const last = points[points.length - 1];
                g.fillStyle = colorFor(key);
                g.beginPath();
                g.arc(x(last.t), y(last.v), 3, 0, 2 * Math.PI);
                g.fill();
            }
            g.restore();
        },
    };

    /* Redraw about 10 times a second so the time axis scrolls smoothly;
     * requestAnimationFrame pauses while the tab is hidden. */
    let lastDraw = 0;
    function frame(ts) {
        if (ts - lastDraw >= 100) {
            lastDraw = ts;
            chart.draw();
        }
        requestAnimationFrame(frame);
    }
    requestAnimationFrame(frame);

    /* ---------------------------------------------------------------- */
    /* Orders                                                             */

    const ticker = byId('ticker');
    const regionViews = new Map();

    function makeRegions() {
        const box = byId('regions');
        for (const region of REGIONS) {
            const node = el('div', `region-box r-${region}`);
            const count = el('b', 'count', '0');
            const total = el('span', 'total', '0.00');
            node.append(el('span', 'name', region.toUpperCase()), count, total);
            box.append(node);
            regionViews.set(region, { count, total, n: 0, sum: 0 });
        }
    }

    function onOrder(msg) {
        const order = msg.payload;
        if (!order || typeof order !== 'object') {
            return;
        }
        const region = order.region || String(msg.topic || '').replace(/^orders:/, '');
        const item = el('li', 'order');
        const time = new Date(Date.parse(msg.time) || Date.now());
        item.append(
            el('time', null, time.toLocaleTimeString()),
            el('span', `region r-${region}`, region.toUpperCase()),
            el('span', 'what', `${order.qty} \u00d7 ${order.item}`),
            el('span', 'total', Number(order.total || 0).toFixed(2)));
        item.title = order.id || '';
        ticker.prepend(item);
        while (ticker.children.length > TICKER_MAX) {
            ticker.lastElementChild.remove();
        }
        const view = regionViews.get(region);
        if (view) {
            view.n++;
            view.sum += Number(order.total) || 0;
            view.count.textContent = String(view.n);
            view.total.textContent = view.sum.toFixed(2);
            flash(view.count);
        }
    }

    function clearOrders() {
        ticker.replaceChildren();
        for (const view of regionViews.values()) {
            view.n = 0;
            view.sum = 0;
            view.count.textContent = '0';
            view.total.textContent = '0.00';
        }
    }

    /* ---------------------------------------------------------------- */
    /* Start                                                              */

    byId('sluice-url').textContent = SLUICE || location.origin;
    byId('line-hint').textContent = LINE ? `line ${LINE} only` : 'all lines';
    makeRegions();

    const plantPath = LINE ? `/plant/${encodeURIComponent(LINE)}` : '/plant';
    openStream('plant', plantPath, { message: onReading }, () => {
        clearCards();
        chart.clear();
    });

    /* /orders names each event after its channel; a route without
     * `event:` (such as /orders/eu) sends plain "message" events. */
    const orderHandlers = { message: onOrder };
    for (const region of REGIONS) {
        orderHandlers[`orders:${region}`] = onOrder;
    }
    openStream('orders', '/orders', orderHandlers, clearOrders);
}());
