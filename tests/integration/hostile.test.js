'use strict';
/*
 * hostile.test.js - hostile HTTP clients over raw TCP (SPEC 4, 6: "bad
 * input never crashes sluice"): garbage and HTTP/0.9 request lines, an
 * unknown HTTP version, oversized headers, paths and Last-Event-IDs, bad
 * percent-encoding, NUL bytes, the Content-Length + Transfer-Encoding
 * smuggling shape, GET with a body, a 1 GB Content-Length, slowloris and
 * half-closed connections.
 *
 * Every case is bounded: it either gets a status line or a close within a
 * few seconds, or it fails as a hang. After every case /healthz must still
 * answer and a fresh stream must still receive an event. A table of what
 * each case got back is printed to the test log (t.diagnostic) at the end,
 * and the last test stops sluice with SIGTERM and checks it exits 0 with
 * no AddressSanitizer/LeakSanitizer report (meaningful with an ASan build
 * in SLUICE_BIN and ASAN_OPTIONS=detect_leaks=1).
 */
const assert = require('node:assert/strict');
const net = require('node:net');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const { sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { parseEnvelope, redisConfig, uniquePayload } = require('./lib/fixtures');

const ctx = { redis: null, sluice: null, pub: null };
before(async () => {
    ctx.redis = await startRedis();
    ctx.sluice = await startSluice(redisConfig(ctx.redis.port));
    ctx.pub = await connectRedis(ctx.redis.port);
});
after(async () => {
    ctx.pub?.close();
    await ctx.sluice?.stop();
    await ctx.redis?.stop();
});
const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

/* case name -> what came back, printed by the last-but-one test. */
const table = [];

/*
 * Parses the responses at the start of text (latin1): a list of
 * {status, statusLine, headers, complete}. A response is complete when its
 * Content-Length body is all there, or (a stream) once its head arrived.
 */
function parseResponses(text) {
    const out = [];
    let pos = 0;
    while (pos < text.length) {
        const end = text.indexOf('\r\n\r\n', pos);
        if (end < 0) {
            break;
        }
        const lines = text.slice(pos, end).split('\r\n');
        const m = /^HTTP\/\d\.\d (\d{3})/.exec(lines[0]);
        if (!m) {
            break;
        }
        const headers = {};
        for (const line of lines.slice(1)) {
            const colon = line.indexOf(':');
            headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const resp = { status: Number(m[1]), statusLine: lines[0], headers, complete: true };
        out.push(resp);
        if (headers['content-length'] === undefined) {
            break; /* chunked or close-delimited: the rest is its body */
        }
        const bodyEnd = end + 4 + Number(headers['content-length']);
        resp.complete = text.length >= bodyEnd;
        pos = bodyEnd;
    }
    return out;
}

/*
 * Connects, writes each chunk of `chunks` (strings or Buffers) and
 * collects the reply until the first response is complete (then waits
 * settleMs more for anything that follows), the server closes, or
 * timeoutMs passes (hang = true). opts: {halfClose: end our side after
 * writing, timeoutMs, settleMs}. Resolves with {responses, text, closed,
 * hang, ms}; never rejects (a reset is a close).
 */
function exchange(port, chunks, opts = {}) {
    const timeoutMs = opts.timeoutMs || 3000;
    const settleMs = opts.settleMs || 0;
    return new Promise((resolve) => {
        const sock = net.connect(port, '127.0.0.1');
        const t0 = Date.now();
        let buf = Buffer.alloc(0);
        let finished = false;
        let settleTimer = null;
        const finish = (closed, hang) => {
            if (finished) {
                return;
            }
            finished = true;
            clearTimeout(timer);
            clearTimeout(settleTimer);
            sock.destroy();
            const text = buf.toString('latin1');
            resolve({ responses: parseResponses(text), text, closed, hang, ms: Date.now() - t0 });
        };
        const timer = setTimeout(() => finish(false, parseResponses(buf.toString('latin1')).length === 0),
            timeoutMs);
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            const rs = parseResponses(buf.toString('latin1'));
            if (rs.length > 0 && rs[0].complete && settleTimer === null) {
                settleTimer = setTimeout(() => finish(false, false), settleMs);
            }
        });
        sock.on('close', () => finish(true, false));
        sock.on('error', () => finish(true, false));
        sock.on('connect', () => {
            for (const c of chunks) {
                sock.write(c);
            }
            if (opts.halfClose) {
                sock.end();
            }
        });
    });
}

/* One line for the table: "400 Bad Request, closed, 2 ms". */
function summarize(r) {
    const parts = [];
    if (r.responses.length > 0) {
        parts.push(r.responses.map((x) => x.statusLine.replace(/^HTTP\/\d\.\d /, '')).join(' + '));
    } else {
        parts.push('no response');
    }
    parts.push(r.hang ? 'HANG' : r.closed ? 'closed' : 'kept open');
    parts.push(`${r.ms} ms`);
    return parts.join(', ');
}

/* A hostile request must be refused with a 4xx, or the connection closed;
 * never answered 2xx/5xx, never left hanging. */
function assertRefused(name, r) {
    assert.ok(!r.hang, `${name}: no status line and no close within the bound (a hang): ${summarize(r)}`);
    if (r.responses.length > 0) {
        const s = r.responses[0].status;
        assert.ok(s >= 400 && s < 500, `${name}: expected a 4xx, got ${r.responses[0].statusLine}`);
    } else {
        assert.ok(r.closed, `${name}: neither a response nor a close: ${summarize(r)}`);
    }
}

let aliveCounter = 0;
/* /healthz answers, and a fresh stream gets a freshly published event. */
async function assertStillServing() {
    const h = await httpRequest(ctx.sluice.port, '/healthz', { timeoutMs: 2000 });
    assert.equal(h.status, 200, '/healthz after the hostile request');
    assert.equal(h.body.trim(), 'ok');
    aliveCounter += 1;
    const region = `alive${aliveCounter}`;
    const c = await openSse(ctx.sluice.port, `/orders/${region}`, { timeoutMs: 2000 });
    try {
        assert.equal(c.status, 200, c.raw);
        await c.waitForFrame((f) => f.retry !== null, 'the retry frame', 2000);
        const payload = uniquePayload({ alive: aliveCounter });
        await ctx.pub.publish(`orders:${region}`, payload);
        const [ev] = await c.waitForEvents(1, 2000);
        assert.equal(JSON.stringify(parseEnvelope(ev).payload), payload);
    } finally {
        c.close();
    }
}

const HIDDEN = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
const CHUNKED_HIDDEN = `0\r\n\r\n${HIDDEN}`;

/* name -> {chunks, opts, check(r)}: the malformed-request cases. */
const CASES = [
    ['garbage request line', ['GARBAGE \x01\x02 GARBAGE\r\n\r\n']],
    ['HTTP/0.9 "GET /"', ['GET /\r\n']],
    ['unknown version HTTP/3.7', ['GET /orders/eu HTTP/3.7\r\nHost: x\r\n\r\n']],
    ['200 KB header', [`GET /orders/eu HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(200 * 1024)}\r\n\r\n`]],
    ['5000 small headers', [`GET /orders/eu HTTP/1.1\r\nHost: x\r\n${
        Array.from({ length: 5000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`]],
    ['100 KB path', [`GET /orders/${'a'.repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`]],
    ['bad %-encoding in path', ['GET /orders/%zz%4 HTTP/1.1\r\nHost: x\r\n\r\n']],
    ['bad %-encoding in query', ['GET /orders/eu?lastEventId=%g1&topic=% HTTP/1.1\r\nHost: x\r\n\r\n']],
    ['NUL (%00) in a path param', ['GET /orders/e%00u HTTP/1.1\r\nHost: x\r\n\r\n']],
    ['NUL (%00) in lastEventId', ['GET /orders/eu?lastEventId=a%00b HTTP/1.1\r\nHost: x\r\n\r\n']],
    ['10 KB Last-Event-ID', [`GET /orders/eu HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${'7'.repeat(10 * 1024)}\r\n\r\n`],
        {}, (r) => assert.equal(r.responses[0]?.status, 400, summarize(r))],
    /* Smuggling shape: a front proxy trusting Content-Length forwards one
     * request, a server trusting Transfer-Encoding would see two. The
     * hidden GET /metrics must not be answered. */
    ['Content-Length + chunked (POST)', [`POST /orders/eu HTTP/1.1\r\nHost: x\r\nContent-Length: ${
        CHUNKED_HIDDEN.length}\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HIDDEN}`], { settleMs: 500 }],
    ['Content-Length + chunked (GET)', [`GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${
        ''}Content-Length: ${CHUNKED_HIDDEN.length}\r\n\r\n${CHUNKED_HIDDEN}`], { settleMs: 500 }],
    ['POST Content-Length: 1000000000', ['POST /orders/eu HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n'],
        { timeoutMs: 1000 }, (r) => assert.ok(r.ms < 1000, `refused after ${r.ms} ms`)],
];

describe('malformed and oversized requests', () => {
    for (const [name, chunks, opts = {}, check] of CASES) {
        it(name, async () => {
            const r = await exchange(ctx.sluice.port, chunks, opts);
            table.push([name, summarize(r)]);
            assertRefused(name, r);
            assert.ok(r.responses.length <= 1, `${name}: one response only, got ${summarize(r)}`);
            assert.doesNotMatch(r.text, /sluice_connections/, `${name}: the hidden request was answered`);
            if (check) {
                check(r);
            }
            await assertStillServing();
        });
    }

    it('GET with a body: the body is not read as a second request', async () => {
        const r = await exchange(ctx.sluice.port,
            [`GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`],
            { settleMs: 500 });
        table.push(['GET /healthz with a body', summarize(r)]);
        assert.ok(!r.hang, summarize(r));
        assert.equal(r.responses.length, 1, `exactly one response: ${summarize(r)}`);
        const s = r.responses[0].status;
        assert.ok(s === 200 || (s >= 400 && s < 500), summarize(r));
        assert.doesNotMatch(r.text, /sluice_connections/, 'the body was answered as a request');
        await assertStillServing();
    });
});

describe('half-closed connections', () => {
    it('a request followed by FIN: answered or closed, nothing left behind', async () => {
        for (const [name, path] of [['half-close after GET /healthz', '/healthz'],
            ['half-close after GET /orders/eu', '/orders/eu']]) {
            const r = await exchange(ctx.sluice.port, [`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`],
                { halfClose: true, timeoutMs: 3000, settleMs: 3000 });
            table.push([name, summarize(r)]);
            assert.ok(!r.hang, `${name}: ${summarize(r)}`);
            assert.ok(r.closed || r.responses.length === 1, `${name}: ${summarize(r)}`);
            if (r.responses.length > 0) {
                assert.equal(r.responses[0].status, 200, `${name}: ${summarize(r)}`);
            }
        }
        await waitFor(async () => /^sluice_connections 0$/m.test(
            (await httpRequest(ctx.sluice.port, '/metrics')).body), 'sluice_connections 0 after the half-closes');
        await assertStillServing();
    });
});

describe('slowloris', () => {
    it('50 connections trickling a header byte every 500 ms are cut by the 10 s timeout; a normal client is not delayed',
        async () => {
            const N = 50;
            const t0 = Date.now();
            const socks = [];
            const open = (trickle) => {
                const s = net.connect(ctx.sluice.port, '127.0.0.1');
                s.state = { text: '', closedAt: null, sent: 0 };
                s.on('data', (d) => { s.state.text += d.toString('latin1'); });
                s.on('close', () => { s.state.closedAt = Date.now() - t0; clearInterval(s.iv); });
                s.on('error', () => {});
                s.on('connect', () => {
                    s.write('GET /orders/eu HTTP/1.1\r\nHost: x\r\nX-Slowloris: ');
                    if (trickle) {
                        s.iv = setInterval(() => {
                            if (!s.destroyed) {
                                s.write('a');
                                s.state.sent += 1;
                            }
                        }, 500);
                    }
                });
                socks.push(s);
                return s;
            };
            try {
                for (let i = 0; i < N; i++) {
                    open(true);
                }
                const silent = open(false); /* the same, but it stops sending */
                await sleep(1500);

                /* Meanwhile a normal client opens a stream and gets an event
                 * within 1 s of its publish. */
                const tOpen = Date.now();
                const c = await openSse(ctx.sluice.port, '/orders/normal', { timeoutMs: 1000 });
                try {
                    assert.equal(c.status, 200);
                    await c.waitForFrame((f) => f.retry !== null, 'the retry frame', 1000);
                    const openMs = Date.now() - tOpen;
                    const payload = uniquePayload({ slowloris: true });
                    const tPub = Date.now();
                    await ctx.pub.publish('orders:normal', payload);
                    const [ev] = await c.waitForEvents(1, 1000);
                    assert.equal(JSON.stringify(parseEnvelope(ev).payload), payload);
                    table.push(['normal stream during slowloris',
                        `opened in ${openMs} ms, event after ${Date.now() - tPub} ms`]);
                } finally {
                    c.close();
                }

                /* The idle timeout is 10 s: allow 14 s from the start. */
                const deadline = t0 + 14000;
                await waitFor(() => socks.every((s) => s.state.closedAt !== null) || Date.now() >= deadline,
                    'the slowloris connections to be closed', 16000, 100);
                const stillOpen = socks.filter((s) => s.state.closedAt === null);
                const trickled = socks[0].state.sent;
                table.push(['slowloris (50 trickling)', stillOpen.length === 0
                    ? `all closed by sluice after ${Math.min(...socks.map((s) => s.state.closedAt))}-${
                        Math.max(...socks.map((s) => s.state.closedAt))} ms`
                    : `${stillOpen.filter((s) => s !== silent).length} of ${N} still open after ${
                        Date.now() - t0} ms (${trickled} bytes trickled each)`]);
                table.push(['partial request, then silence', silent.state.closedAt !== null
                    ? `closed after ${silent.state.closedAt} ms` : `still open after ${Date.now() - t0} ms`]);
                assert.ok(silent.state.closedAt !== null && silent.state.closedAt < 13000,
                    `the silent partial request was closed by the timeout (at ${silent.state.closedAt} ms)`);
                for (const s of socks) {
                    assert.doesNotMatch(s.state.text, /^HTTP\/1\.[01] 2/, 'a slowloris request was answered 2xx');
                }
                assert.equal(stillOpen.length, 0,
                    `${stillOpen.length} of ${N + 1} slowloris connections still open ${Date.now() - t0} ms after ` +
                    `they started trickling one byte per 500 ms (read timeout is 10 s)`);
            } finally {
                for (const s of socks) {
                    clearInterval(s.iv);
                    s.destroy();
                }
            }
            await waitFor(async () => /^sluice_connections 0$/m.test(
                (await httpRequest(ctx.sluice.port, '/metrics')).body), 'sluice_connections 0');
            await assertStillServing();
        });
});

/* The table is printed, and it is also a check: every malformed case ran
 * (none skipped or lost) and its row shows a 4xx or a close, never a 2xx,
 * a 5xx or a hang. */
test('table of responses: every malformed case ran and was refused', (t) => {
    const width = Math.max(...table.map(([name]) => name.length));
    t.diagnostic('hostile client case -> what sluice sent back');
    for (const [name, what] of table) {
        t.diagnostic(`${name.padEnd(width)}  ${what}`);
    }
    for (const [name] of CASES) {
        const rows = table.filter(([n]) => n === name);
        assert.equal(rows.length, 1, `case "${name}" has ${rows.length} rows in the table (did it run?)`);
        assert.match(rows[0][1], /^(4\d\d [^,+]*|no response), (closed|kept open), \d+ ms$/,
            `case "${name}": ${rows[0][1]}`);
    }
    assert.ok(table.some(([n]) => n === 'slowloris (50 trickling)'), 'the slowloris case ran');
    assert.match(table.find(([n]) => n === 'slowloris (50 trickling)')[1], /^all closed by sluice/);
});

it('SIGTERM: exit 0 and no sanitizer report', async () => {
    ctx.pub.close();
    ctx.pub = null;
    const res = await ctx.sluice.stop('SIGTERM');
    const stderr = ctx.sluice.stderr;
    assert.deepEqual(res, { code: 0, signal: null }, 'sluice exit status');
    assert.doesNotMatch(stderr, /ERROR: AddressSanitizer|LeakSanitizer|runtime error:/);
});
