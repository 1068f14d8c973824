'use strict';
/*
 * errors.test.js - status codes and operational endpoints (SPEC 3.1, 4,
 * 5): 404, 405 with Allow, 400 for bad percent-encoding, glob injection
 * and malformed queries, one-line error bodies, /healthz and /metrics.
 */
const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const { openSse, httpRequest } = require('./lib/sse');
const { waitFor } = require('./lib/procs');
const { withLog } = require('./lib/sluice');
const { useRedisSluice } = require('./lib/fixtures');

const ctx = useRedisSluice();
const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));
const get = (path, opts) => httpRequest(ctx.sluice.port, path, opts);

/* An error body is one short line of text. */
function assertShortLine(res) {
    const body = res.body.replace(/\r?\n$/, '');
    assert.ok(body.length > 0 && body.length <= 200, `body ${JSON.stringify(res.body)}`);
    assert.ok(!/[\r\n]/.test(body), `one line: ${JSON.stringify(res.body)}`);
    assert.doesNotMatch(res.headers['content-type'] || '', /event-stream/);
}

describe('status codes', () => {
    it('404 for an unknown path', async () => {
        for (const path of ['/nope', '/orders', '/orders/eu/extra', '/ALL']) {
            const res = await get(path);
            assert.equal(res.status, 404, path);
            assertShortLine(res);
        }
    });

    it('405 with Allow: GET, HEAD, OPTIONS for other methods', async () => {
        for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
            const res = await get('/orders/eu', { method, body: method === 'DELETE' ? undefined : 'x' });
            assert.equal(res.status, 405, method);
            const allow = (res.headers.allow || '').split(',').map((s) => s.trim()).sort();
            assert.deepEqual(allow, ['GET', 'HEAD', 'OPTIONS'], `${method} Allow: ${res.headers.allow}`);
            assertShortLine(res);
        }
    });

    it('400 for bad percent-encoding in a parameter', async () => {
        for (const path of ['/orders/%zz', '/orders/%4', '/orders/ab%']) {
            const res = await get(path);
            assert.equal(res.status, 400, path);
            assertShortLine(res);
        }
    });

    it('400 for a parameter that would inject a Redis glob', async () => {
        const paths = ['/orders/*', '/orders/a%3Fb', '/orders/a%2Ab', '/orders/%5Bab%5D', '/raw/x*'];
        for (const path of paths) {
            const res = await get(path);
            assert.equal(res.status, 400, path);
            assertShortLine(res);
        }
    });

    it('400 for a malformed query', async () => {
        for (const path of ['/all?topic=%zz', '/all?topic=orders%3', '/orders/eu?lastEventId=%g1']) {
            const res = await get(path);
            assert.equal(res.status, 400, path);
            assertShortLine(res);
        }
    });

    it('a valid encoded parameter is decoded, not refused', async () => {
        const c = await openSse(ctx.sluice.port, '/orders/e%75');
        try {
            assert.equal(c.status, 200, c.raw);
            await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
            await ctx.pub.publish('orders:eu', '"decoded"');
            const [ev] = await c.waitForEvents(1);
            assert.equal(JSON.parse(ev.data).payload, 'decoded');
        } finally {
            c.close();
        }
    });

    it('error responses carry Referrer-Policy: no-referrer', async () => {
        for (const path of ['/nope', '/orders/%zz']) {
            const res = await get(path);
            assert.equal(res.headers['referrer-policy'], 'no-referrer', path);
        }
    });
});

describe('operations', () => {
    it('/healthz answers 200 ok', async () => {
        const res = await get('/healthz');
        assert.equal(res.status, 200);
        assert.equal(res.body.trim(), 'ok');
    });

    it('/readyz answers 200 while the source is connected', async () => {
        const res = await get('/readyz');
        assert.equal(res.status, 200, res.body);
    });

    /* The value of one sample line "NAME{LABELS} VALUE" in /metrics. */
    async function metric(series) {
        const res = await get('/metrics');
        assert.equal(res.status, 200);
        const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
        assert.ok(line, `${series} in /metrics:\n${res.body}`);
        return Number(line.slice(series.length + 1));
    }

    it('/metrics is Prometheus text with the required series', async () => {
        const res = await get('/metrics');
        assert.equal(res.status, 200);
        assert.match(res.headers['content-type'], /^text\/plain/);
        assert.match(res.body, /^sluice_connections \d+$/m);
        assert.match(res.body, /^sluice_events_received_total\{source="cache"\} \d+$/m);
        assert.match(res.body, /^# TYPE sluice_connections gauge$/m);
        assert.match(res.body, /^# TYPE sluice_events_received_total counter$/m);
    });

    it('/metrics lists every series SPEC 5 names', async () => {
        const res = await get('/metrics');
        for (const name of ['sluice_connections', 'sluice_events_received_total',
            'sluice_events_delivered_total', 'sluice_clients_dropped_total',
            'sluice_replayed_events_total', 'sluice_history_events', 'sluice_history_bytes',
            'sluice_source_up']) {
            assert.match(res.body, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), name);
        }
        assert.match(res.body, /^sluice_source_up\{source="cache"\} 1$/m);
    });

    it('sluice_events_received_total counts each published message once', async () => {
        const series = 'sluice_events_received_total{source="cache"}';
        const before = await metric(series);
        for (let i = 0; i < 3; i++) {
            await ctx.pub.publish('orders:metrics', `${i}`);
        }
        await waitFor(async () => (await metric(series)) >= before + 3, `${series} to grow by 3`);
        assert.equal(await metric(series), before + 3);
    });

    it('sluice_connections follows open streams', async () => {
        const before = await metric('sluice_connections');
        const a = await openSse(ctx.sluice.port, '/orders/m1');
        const b = await openSse(ctx.sluice.port, '/orders/m2');
        try {
            await a.waitForFrame((f) => f.retry !== null, 'retry on a');
            await b.waitForFrame((f) => f.retry !== null, 'retry on b');
            assert.equal(await metric('sluice_connections'), before + 2);
        } finally {
            a.close();
            b.close();
        }
        await waitFor(async () => (await metric('sluice_connections')) === before,
            'sluice_connections back to its value before');
    });
});
