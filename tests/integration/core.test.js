'use strict';
/*
 * core.test.js - the basic end-to-end path (SPEC 3.3, 4): Redis PUBLISH
 * in, SSE out. Headers, the retry frame, the json envelope for JSON /
 * text / binary payloads, ids, routing and ?topic= narrowing, event
 * names, the raw format, HEAD, heartbeats, and the npm EventSource.
 */
const assert = require('node:assert/strict');
const net = require('node:net');
const { once } = require('node:events');
const { describe, test } = require('node:test');
const { EventSource } = require('eventsource');
const { openSse, httpRequest } = require('./lib/sse');
const { sleep, waitFor } = require('./lib/procs');
const { withLog } = require('./lib/sluice');
const {
    assertIncreasing, parseEnvelope, uniquePayload, useRedisSluice,
} = require('./lib/fixtures');

const ctx = useRedisSluice({ heartbeat: '1s', retry: '2s' });
const port = () => ctx.sluice.port;
const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

/* Opens a stream and waits for its retry frame, so it is registered. */
async function open(path, headers) {
    const c = await openSse(port(), path, { headers });
    assert.equal(c.status, 200, `GET ${path}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

describe('stream basics', () => {
    it('answers 200 with the SSE headers and starts with retry: 2000', async () => {
        const c = await openSse(port(), '/orders/eu');
        try {
            assert.equal(c.status, 200);
            assert.match(c.headers['content-type'], /^text\/event-stream(;|$)/);
            assert.equal(c.headers['cache-control'], 'no-store');
            assert.equal(c.headers['x-accel-buffering'], 'no');
            assert.equal(c.headers['referrer-policy'], 'no-referrer');
            assert.equal(c.headers['transfer-encoding'], 'chunked');
            const first = await c.waitForFrame(() => c.frames[0], 'a first frame');
            assert.equal(first.retry, 2000);
            assert.equal(first.data, null);
            assert.equal(first.event, null);
        } finally {
            c.close();
        }
    });

    it('HEAD answers the headers and no body', async () => {
        const res = await httpRequest(port(), '/orders/eu', { method: 'HEAD' });
        assert.equal(res.status, 200);
        assert.match(res.headers['content-type'], /^text\/event-stream/);
        assert.equal(res.headers['cache-control'], 'no-store');
        assert.equal(res.body, '');
    });

    it('an HTTP/1.0 client gets a close-delimited stream', async () => {
        const sock = net.connect(port(), '127.0.0.1');
        let text = '';
        sock.on('data', (d) => { text += d.toString('latin1'); });
        try {
            await once(sock, 'connect');
            sock.write('GET /orders/h10 HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n');
            await waitFor(() => text.includes('retry: 2000'), 'the retry frame over HTTP/1.0');
            await ctx.pub.publish('orders:h10', '"plain"');
            await waitFor(() => text.includes('"payload":"plain"'), 'the event over HTTP/1.0');
            const head = text.slice(0, text.indexOf('\r\n\r\n'));
            assert.match(head, /^HTTP\/1\.[01] 200 /);
            assert.doesNotMatch(head, /transfer-encoding/i);
            assert.match(text, /\r\n\r\nretry: 2000\n\n/, 'the body is sent unframed');
        } finally {
            sock.destroy();
        }
    });
});

describe('json envelope', () => {
    it('a JSON payload arrives parsed, with the SSE id inside', async () => {
        const c = await open('/orders/eu');
        try {
            const payload = { order: 42, items: ['a', 'b'], ok: true, nested: { x: null } };
            await ctx.pub.publish('orders:eu', JSON.stringify(payload));
            const [ev] = await c.waitForEvents(1);
            assert.equal(ev.event, null, 'default event name: none (browser sees "message")');
            const env = parseEnvelope(ev, { topic: 'orders:eu' });
            assert.deepEqual(env.payload, payload);
        } finally {
            c.close();
        }
    });

    it('a text payload is a JSON string, binary is base64 with "encoding"', async () => {
        const c = await open('/orders/eu');
        try {
            await ctx.pub.publish('orders:eu', 'hello, "world" – ü');
            await ctx.pub.publish('orders:eu', Buffer.from([0xff, 0xfe]));
            await ctx.pub.publish('orders:eu', '');
            const [text, bin, empty] = await c.waitForEvents(3);
            assert.equal(parseEnvelope(text).payload, 'hello, "world" – ü');
            const benv = parseEnvelope(bin, { encoding: true });
            assert.equal(benv.payload, '//4=');
            assert.equal(benv.encoding, 'base64');
            assert.equal(parseEnvelope(empty).payload, '');
        } finally {
            c.close();
        }
    });

    it('ids are strictly increasing and each event arrives once', async () => {
        const c = await open('/orders/eu');
        try {
            const sent = [];
            for (let i = 0; i < 10; i++) {
                sent.push(uniquePayload({ i }));
                await ctx.pub.publish('orders:eu', sent[i]);
            }
            const events = await c.waitForEvents(10);
            assert.deepEqual(events.map((e) => JSON.stringify(parseEnvelope(e).payload)), sent);
            assertIncreasing(events.map((e) => e.id));
            /* "Once": a marker published after them ends the count. */
            const marker = uniquePayload({ marker: true });
            await ctx.pub.publish('orders:eu', marker);
            await c.waitUntil(() => c.events.some((e) => e.data.includes(marker)), 'the marker');
            assert.equal(c.events.length, 11, `no extra events before the marker: ${c.describe()}`);
        } finally {
            c.close();
        }
    });
});

describe('routing', () => {
    it('/orders/us does not receive orders:eu', async () => {
        const us = await open('/orders/us');
        const eu = await open('/orders/eu');
        try {
            await ctx.pub.publish('orders:eu', uniquePayload());
            const marker = uniquePayload({ marker: true });
            await ctx.pub.publish('orders:us', marker);
            const [ev] = await us.waitForEvents(1);
            assert.equal(JSON.stringify(parseEnvelope(ev, { topic: 'orders:us' }).payload), marker);
            await eu.waitForEvents(1);
            /* End marker on orders:eu, published after everything: once it
             * is on /orders/eu, /orders/us has had its chance too. */
            const end = uniquePayload({ end: true });
            await ctx.pub.publish('orders:eu', end);
            await eu.waitForEvents(2);
            const probe = uniquePayload({ probe: true });
            await ctx.pub.publish('orders:us', probe);
            await us.waitForEvents(2);
            assert.equal(JSON.stringify(parseEnvelope(us.events[1]).payload), probe, us.describe());
            assert.equal(eu.events.length, 2, eu.describe());
        } finally {
            us.close();
            eu.close();
        }
    });

    it('event: topic names each event after its topic', async () => {
        const c = await open('/all');
        try {
            await ctx.pub.publish('orders:eu', '1');
            await ctx.pub.publish('orders:us', '2');
            const [a, b] = await c.waitForEvents(2);
            assert.equal(a.event, 'orders:eu');
            assert.equal(b.event, 'orders:us');
            assert.equal(parseEnvelope(a, { topic: 'orders:eu' }).payload, 1);
            assert.equal(parseEnvelope(b, { topic: 'orders:us' }).payload, 2);
        } finally {
            c.close();
        }
    });

    it('?topic= narrows /all to the matching topic', async () => {
        const c = await open('/all?topic=orders:eu');
        try {
            await ctx.pub.publish('orders:us', '"us"');
            await ctx.pub.publish('orders:eu', '"eu"');
            await ctx.pub.publish('orders:asia', '"asia"');
            await ctx.pub.publish('orders:eu', '"eu2"');
            const events = await c.waitForEvents(2);
            assert.deepEqual(events.map((e) => parseEnvelope(e).payload), ['eu', 'eu2']);
            assert.deepEqual(events.map((e) => e.event), ['orders:eu', 'orders:eu']);
            await ctx.pub.publish('orders:asia', '"asia2"');
            await ctx.pub.publish('orders:eu', '"end"');
            await c.waitForEvents(3);
            assert.deepEqual(c.events.map((e) => parseEnvelope(e).payload), ['eu', 'eu2', 'end'], c.describe());
        } finally {
            c.close();
        }
    });

    it('a fixed event name is used for every event', async () => {
        const c = await open('/fixed');
        try {
            await ctx.pub.publish('fixed', '{"t":1}');
            const [ev] = await c.waitForEvents(1);
            assert.equal(ev.event, 'tick');
            assert.deepEqual(parseEnvelope(ev, { topic: 'fixed' }).payload, { t: 1 });
        } finally {
            c.close();
        }
    });
});

describe('raw format', () => {
    it('a multi-line payload becomes one data line per line', async () => {
        const c = await open('/raw/lines');
        try {
            await ctx.pub.publish('lines', 'a\nb\r\nc');
            const [ev] = await c.waitForEvents(1);
            assert.equal(ev.data, 'a\nb\nc');
            assert.equal(ev.event, null);
            assert.match(ev.id, /^[0-9A-Za-z._:-]+$/);
            assert.match(c.raw, /\ndata: ?a\r?\ndata: ?b\r?\ndata: ?c\r?\n\r?\n/);
        } finally {
            c.close();
        }
    });

    it('an empty payload is one empty data line', async () => {
        const c = await open('/raw/empty');
        try {
            await ctx.pub.publish('empty', '');
            await ctx.pub.publish('empty', 'after');
            const [empty, after] = await c.waitForEvents(2);
            assert.equal(empty.data, '');
            assert.equal(after.data, 'after');
        } finally {
            c.close();
        }
    });

    it('a payload that is not UTF-8 is sent base64-encoded', async () => {
        const c = await open('/raw/bin');
        try {
            await ctx.pub.publish('bin', Buffer.from([0xff, 0xfe]));
            const [ev] = await c.waitForEvents(1);
            assert.equal(ev.data, '//4=');
        } finally {
            c.close();
        }
    });
});

describe('heartbeats (stream.heartbeat: 1s)', () => {
    /* A fresh stream may first get one id-only checkpoint of the head
     * (giving it a resume position); the history does not move after
     * that, so the next heartbeats must be ":" comments. */
    it('a quiet stream gets a ":" comment (after at most one head checkpoint)', async () => {
        const probe = await open('/raw/hbprobe');
        await ctx.pub.publish('hbprobe', 'probe');
        const [{ id: head }] = await probe.waitForEvents(1);
        probe.close();
        const c = await open('/fixed');
        try {
            await c.waitUntil(() => c.comments.length > 0, 'a heartbeat comment', 4500);
            const checkpoints = c.frames.filter((f) => f.id !== null);
            assert.ok(checkpoints.length <= 1, `at most one checkpoint: ${c.describe()}`);
            checkpoints.forEach((f) => assert.equal(f.id, head, 'a checkpoint names the head'));
            assert.equal(c.events.length, 0, c.describe());
        } finally {
            c.close();
        }
    });

    it('a filtered stream gets an id-only checkpoint at the history head', async () => {
        const us = await open('/orders/us');
        const eu = await open('/orders/eu');
        const es = new EventSource(ctx.sluice.url('/orders/us'));
        const dispatched = [];
        es.onmessage = (e) => dispatched.push(e.data);
        try {
            await new Promise((resolve, reject) => {
                es.onopen = resolve;
                es.onerror = (e) => reject(new Error(`EventSource error: ${e.message}`));
            });
            /* The checkpoint comes with the first heartbeat (1 s) after
             * the history moved on; the bound is sized for a loaded
             * machine under ASan and costs nothing when it comes early. */
            const stop = Date.now() + 8000;
            while (Date.now() < stop && !us.frames.some((f) => f.id !== null)) {
                await ctx.pub.publish('orders:eu', uniquePayload());
                await sleep(100);
            }
            const checkpoint = await us.waitForFrame((f) => f.id !== null, 'an id-only frame', 2000);
            assert.equal(checkpoint.data, null);
            assert.equal(checkpoint.event, null);
            await eu.waitUntil(() => eu.events.some((e) => e.id === checkpoint.id),
                `an orders:eu event with the checkpoint's id ${checkpoint.id}`);
            assert.equal(us.events.length, 0, us.describe());
            /* The EventSource got the same id-only frame (it is on the
             * same stream); a marker event on orders:us then ends the
             * check: the EventSource must have dispatched that marker and
             * nothing before it (an id-only frame dispatches nothing). */
            const marker = uniquePayload({ marker: 'us' });
            await ctx.pub.publish('orders:us', marker);
            await us.waitForEvents(1);
            await waitFor(() => dispatched.length > 0, 'the EventSource to dispatch the marker');
            assert.deepEqual(dispatched.map((d) => JSON.stringify(JSON.parse(d).payload)), [marker],
                'EventSource dispatched only the marker, nothing for the id-only frame');
        } finally {
            es.close();
            us.close();
            eu.close();
        }
    });
});

describe('npm eventsource', () => {
    it('receives a live event with its id', async () => {
        const es = new EventSource(ctx.sluice.url('/orders/es'));
        try {
            await new Promise((resolve, reject) => {
                es.onopen = resolve;
                es.onerror = (e) => reject(new Error(`EventSource error: ${e.message}`));
            });
            const got = new Promise((resolve) => { es.onmessage = resolve; });
            await ctx.pub.publish('orders:es', '{"hello":"browser"}');
            const ev = await Promise.race([got, sleep(5000).then(() => null)]);
            assert.ok(ev, 'an event within 5 s');
            const env = JSON.parse(ev.data);
            assert.deepEqual(env.payload, { hello: 'browser' });
            assert.equal(ev.lastEventId, env.id);
            assert.equal(env.topic, 'orders:es');
        } finally {
            es.close();
        }
    });
});
