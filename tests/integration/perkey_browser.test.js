'use strict';
/*
 * perkey_browser.test.js - a resumable AI-token stream in a real browser:
 * headless Chromium's own EventSource on a per-key route (README
 * "Resumable AI responses and job streams").
 *
 * A producer XADDs 200 tokens at ~200/s to chat:<id>; the page opens
 * half-way and must get all 200 from the start, in order, with
 * lastEventId equal to each entry id; sluice is killed with -9 during the
 * generation and restarted on the same port: the browser reconnects by
 * itself with Last-Event-ID and must see no duplicate, no gap, no reset;
 * the end entry arrives as "event: end", sluice closes the stream, and
 * the browser's reconnect gets 204, so the EventSource ends CLOSED.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const { after, before, test } = require('node:test');
const { freePort, makeTempDir, sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { requireBinary, startSluice, withLog } = require('./lib/sluice');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const STEP_MS = 30000;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sluice per-key</title></head>
<body><pre id="out"></pre>
<script>
window.tokens = [];
window.ids = [];
window.ends = [];
window.resets = [];
window.errors = 0;
window.opens = 0;
const es = new EventSource(new URLSearchParams(location.search).get('url'));
window.es = es;
es.onopen = () => { window.opens += 1; };
es.onerror = () => { window.errors += 1; };
es.onmessage = (e) => {
    window.tokens.push(e.data);
    window.ids.push(e.lastEventId);
    document.getElementById('out').textContent += e.data;
};
es.addEventListener('end', (e) => { window.ends.push({ id: e.lastEventId, data: e.data }); });
es.addEventListener('reset', (e) => { window.resets.push(e.data); });
</script></body></html>
`;

const ctx = { redis: null, pub: null, sluice: null, server: null, origin: null, browser: null };

function config() {
    return [
        'sources:',
        '  - name: ai',
        '    type: redis-stream',
        `    url: redis://127.0.0.1:${ctx.redis.port}`,
        'routes:',
        '  - path: /chat/{id}',
        '    topics: ["ai:chat:{id}"]',
        '    format: raw',
        '    data_field: t',
        '    end: {field: type, value: done}',
        'stream:',
        '  retry: 300ms',
        'cors:',
        `  origins: ["${ctx.origin}"]`,
        'shutdown_grace: 1s',
        '',
    ].join('\n');
}

before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (set CHROMIUM)`);
    requireBinary();
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    const pagePort = await freePort();
    ctx.origin = `http://127.0.0.1:${pagePort}`;
    ctx.server = http.createServer((req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(PAGE);
    });
    await new Promise((resolve) => ctx.server.listen(pagePort, '127.0.0.1', resolve));
    ctx.sluice = await startSluice(config());
    const { chromium } = require('playwright-core');
    ctx.browser = await chromium.launchPersistentContext(makeTempDir('sluice-chromium-'), {
        executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
    });
});

after(async () => {
    if (ctx.browser) await ctx.browser.close();
    if (ctx.server) {
        ctx.server.closeAllConnections();
        await new Promise((resolve) => ctx.server.close(resolve));
    }
    ctx.pub?.close();
    await ctx.sluice?.stop('SIGKILL');
    await ctx.redis?.stop();
});

const state = (page) => page.evaluate(() => ({
    tokens: window.tokens, ids: window.ids, ends: window.ends, resets: window.resets,
    errors: window.errors, opens: window.opens, readyState: window.es.readyState,
}));

test('Chromium: opened half-way, kill -9 mid-generation, end: every token once, in order, then 204',
    withLog(() => ctx.sluice, async () => {
        const key = `chat:b${process.pid}`;
        const ids = [];
        const add = async (i) => {
            ids.push(await ctx.pub.command('XADD', key, '*', 't', `t${i} `));
            await sleep(5);
        };
        for (let i = 1; i <= 100; i++) await add(i);

        const page = await ctx.browser.newPage();
        const url = `${ctx.origin}/?url=${encodeURIComponent(ctx.sluice.url(`/chat/b${process.pid}`))}`;
        await page.goto(url);
        await waitFor(async () => (await state(page)).tokens.length >= 100, '100 tokens', STEP_MS);

        /* The second half, with a kill -9 and a restart in the middle. */
        const producing = (async () => { for (let i = 101; i <= 200; i++) await add(i); })();
        await waitFor(async () => (await state(page)).tokens.length >= 110, '110 tokens', STEP_MS);
        const errorsBefore = (await state(page)).errors;
        assert.deepEqual(await ctx.sluice.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });
        const atKill = ids.length;
        await ctx.sluice.start();
        await producing;
        assert.ok(atKill < 200, `the kill came during the generation (${atKill} entries)`);
        const endId = await ctx.pub.command('XADD', key, '*', 'type', 'done', 't', '');

        const s = await waitFor(async () => {
            const st = await state(page);
            return st.ends.length > 0 && st.readyState === 2 ? st : null;
        }, 'the end event and a CLOSED EventSource', STEP_MS);
        assert.deepEqual(s.tokens, ids.map((_, i) => `t${i + 1} `));
        assert.deepEqual(s.ids, ids);
        assert.deepEqual(s.ends, [{ id: endId, data: '' }]);
        assert.deepEqual(s.resets, []);
        assert.ok(s.errors > errorsBefore, 'the page saw the kill');
        await page.close();
    }));
