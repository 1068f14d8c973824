'use strict';
/*
 * tls_browser.test.js - headless Chromium's own EventSource over HTTPS
 * and HTTP/2 straight to sluice (no proxy), across a kill -9 of sluice.
 *
 * One page opens twenty EventSources on a Redis Streams route: over
 * HTTP/1.1 a browser would give only six of them a connection; over
 * HTTP/2 they share one. The certificate is made here with openssl;
 * Chromium ignores that it is self-signed. The DevTools protocol reports
 * each response's protocol and TLS version: every stream must be h2 over
 * TLS, and the page's resource timing must show one connection.
 * XADD 1..5, kill -9, XADD 6..10, restart on the same port (history.dir
 * with fsync: always), XADD 11..15: every EventSource must end with
 * exactly 1..15, in order, once each, with no reset.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startPageServer } = require('./lib/fixtures');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { after, before, test } = require('node:test');
const { freePort, makeTempDir, sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { requireBinary, startSluice, withLog } = require('./lib/sluice');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const STREAMS = 20;
const RETRY_MS = 500;
const STEP_MS = 15000;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sluice tls</title></head><body><script>
const url = new URLSearchParams(location.search).get('url');
window.received = [];
window.resets = [];
window.opens = [];
window.errors = [];
for (let i = 0; i < ${STREAMS}; i++) {
    window.received.push([]);
    window.resets.push(0);
    window.opens.push(0);
    window.errors.push(0);
    const es = new EventSource(url);
    es.onopen = () => { window.opens[i] += 1; };
    es.onerror = () => { window.errors[i] += 1; };
    es.onmessage = (e) => { window.received[i].push(Number(JSON.parse(e.data).payload.n)); };
    es.addEventListener('reset', () => { window.resets[i] += 1; });
}
</script></body></html>
`;

const ctx = { redis: null, xadd: null, sluice: null, server: null, context: null, pageOrigin: null };

function makeCert(dir) {
    const cert = path.join(dir, 'tls.crt');
    const key = path.join(dir, 'tls.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
        '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    return { cert, key };
}

function config(dir, c) {
    return [
        'sources:',
        '  - name: audit',
        '    type: redis-stream',
        `    url: redis://127.0.0.1:${ctx.redis.port}`,
        '    streams: ["audit"]',
        'routes:',
        '  - path: /audit',
        '    topics: ["audit:audit"]',
        '    public: true',
        'tls:',
        `  cert_file: ${c.cert}`,
        `  key_file: ${c.key}`,
        'http2:',
        '  enabled: true',
        'history:',
        `  dir: ${path.join(dir, 'history')}`,
        '  fsync: always',
        'stream:',
        `  retry: ${RETRY_MS}ms`,
        'cors:',
        `  origins: ["${ctx.pageOrigin}"]`,
        'shutdown_grace: 1s',
        '',
    ].join('\n');
}

before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (set CHROMIUM)`);
    requireBinary();
    const dir = makeTempDir('sluice-tls-browser-');
    ctx.redis = await startRedis();
    ctx.xadd = await connectRedis(ctx.redis.port);
    const pagePort = await freePort();
    ctx.pageOrigin = `http://127.0.0.1:${pagePort}`;
    ctx.server = await startPageServer(pagePort, PAGE);
    ctx.sluice = await startSluice(config(dir, makeCert(dir)), { tls: true });
    const { chromium } = require('playwright-core');
    ctx.context = await chromium.launchPersistentContext(makeTempDir('sluice-chromium-'), {
        executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, ignoreHTTPSErrors: true,
    });
});

after(async () => {
    await ctx.context?.close();
    if (ctx.server) {
        ctx.server.closeAllConnections();
        await new Promise((resolve) => ctx.server.close(resolve));
    }
    ctx.xadd?.close();
    await ctx.sluice?.stop('SIGKILL');
    await ctx.redis?.stop();
});

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const readPage = (page) => page.evaluate(() => ({
    received: window.received, resets: window.resets, opens: window.opens, errors: window.errors,
}));

async function waitAll(page, pred, what) {
    let last = null;
    try {
        await waitFor(async () => { last = await readPage(page); return pred(last); }, what, STEP_MS, 50);
    } catch (err) {
        err.message += `; the page has ${JSON.stringify(last)}`;
        throw err;
    }
    return last;
}

test('Chromium: 20 EventSources over HTTPS on one HTTP/2 connection, exact resume across kill -9',
    { timeout: 50000 }, withLog(() => ctx.sluice, async (t) => {
        const page = await ctx.context.newPage();
        const cdp = await ctx.context.newCDPSession(page);
        const streams = [];
        cdp.on('Network.responseReceived', (e) => {
            if (e.type === 'EventSource') {
                streams.push({
                    protocol: e.response.protocol,
                    tls: e.response.securityDetails?.protocol,
                    connection: e.response.connectionId,
                });
            }
        });
        await cdp.send('Network.enable');
        const xadd = async (from, to) => {
            for (const n of range(from, to)) {
                await ctx.xadd.xadd('audit', ['n', String(n)]);
            }
        };
        try {
            await page.goto(`${ctx.pageOrigin}/?url=${encodeURIComponent(ctx.sluice.url('/audit'))}`);
            await waitAll(page, (p) => p.opens.every((n) => n >= 1), 'every EventSource to open');
            await xadd(1, 5);
            await waitAll(page, (p) => p.received.every((r) => r.length >= 5), '1..5 on every stream');
            const first = streams.slice(0, STREAMS);
            assert.equal(new Set(first.map((s) => s.connection)).size, 1,
                `all ${STREAMS} streams on one connection: ${JSON.stringify(first)}`);

            const errorsBefore = (await readPage(page)).errors;
            await ctx.sluice.stop('SIGKILL');
            await waitAll(page, (p) => p.errors.every((n, i) => n > errorsBefore[i]), 'every stream to see the kill');
            await xadd(6, 10);
            await ctx.sluice.start();
            await xadd(11, 15);

            await waitAll(page, (p) => p.received.every((r) => r.length >= 15), '1..15 on every stream');
            await sleep(2 * RETRY_MS);
            const final = await readPage(page);
            for (let i = 0; i < STREAMS; i++) {
                assert.deepEqual(final.received[i], range(1, 15), `stream ${i}: exactly 1..15 in order`);
                assert.equal(final.resets[i], 0, `stream ${i}: no reset`);
                assert.ok(final.opens[i] >= 2, `stream ${i} reconnected by itself`);
            }
            assert.ok(streams.length >= 2 * STREAMS, `responses seen: ${JSON.stringify(streams)}`);
            for (const s of streams) {
                assert.equal(s.protocol, 'h2');
                assert.match(s.tls || '', /^TLS 1\.[23]$/);
            }
            t.diagnostic(`stream responses: ${JSON.stringify(streams.slice(0, 2))} ... (${streams.length})`);
        } finally {
            await page.close();
        }
    }));
