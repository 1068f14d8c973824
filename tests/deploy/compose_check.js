'use strict';
/*
 * compose_check.js - the checks of compose_check.sh against a running
 * deploy/docker-compose.yml (project $COMPOSE_PROJECT, Caddy's HTTPS on
 * $HTTPS_PORT of localhost):
 *
 *   1. four streams of /sse/plant through Caddy answer 200 and get
 *      events; each replica's /metrics (read inside its container: Caddy
 *      answers 404 for it) counts two of them (round robin), and exactly
 *      one replica is ingest leader per source;
 *   2. kill -9 of the ingest leader's process (a crash: Docker's restart
 *      policy starts it again); its streams end, the others go on, the
 *      other replica takes over every source;
 *   3. each cut stream reopens through Caddy with Last-Event-ID: it must
 *      answer 200, with no reset, and its events must be exactly those
 *      that a stream that was never cut received after that id.
 * Exit 0 when all hold.
 */
const assert = require('node:assert/strict');
const https = require('node:https');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { SseParser } = require('../integration/lib/sse');

const DEPLOY = path.resolve(__dirname, '../../deploy');
const PROJECT = process.env.COMPOSE_PROJECT || 'sluice-check';
const PORT = Number(process.env.HTTPS_PORT || 443);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const compose = (...args) => execFileSync('docker-compose', ['-p', PROJECT, ...args],
    { cwd: DEPLOY, encoding: 'utf8' });

/* One SSE stream over HTTPS/1.1 (Caddy's local CA: not verified). */
function open(p, headers = {}) {
    const s = { events: [], frames: [], ended: false, status: 0 };
    s.req = https.request({ host: 'localhost', port: PORT, path: p, rejectUnauthorized: false,
        headers: { Accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
        s.status = res.statusCode;
        const parser = new SseParser((f) => {
            s.frames.push(f);
            if (f.data !== null && f.event === null) {
                s.events.push(f);
            }
        }, () => {});
        res.on('data', (c) => parser.feed(c));
        for (const ev of ['end', 'close', 'error']) {
            res.on(ev, () => { s.ended = true; });
        }
    });
    s.req.on('error', () => { s.ended = true; });
    s.req.end();
    return s;
}

function metrics(service) {
    const text = compose('exec', '-T', service, 'curl', '-s', 'http://127.0.0.1:8080/metrics');
    const leaders = {};
    for (const m of text.matchAll(/^sluice_ingest_leader\{source="([^"]+)"\} (\d)$/gm)) {
        leaders[m[1]] = Number(m[2]);
    }
    return { streams: Number(/^sluice_connections (\d+)$/m.exec(text)[1]), leaders };
}

async function until(fn, what, ms = 30000, detail = () => '') {
    const deadline = Date.now() + ms;
    for (;;) {
        if (fn()) {
            return;
        }
        assert.ok(Date.now() < deadline, `timed out waiting for ${what} ${detail()}`);
        await sleep(100);
    }
}

function ready(service) {
    try {
        return compose('exec', '-T', service, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
            'http://127.0.0.1:8080/readyz') === '200';
    } catch {
        return false;
    }
}

/* Resolves with the status of GET p through Caddy, 0 when it fails. */
function status(p) {
    return new Promise((resolve) => {
        const req = https.get({ host: 'localhost', port: PORT, path: p, rejectUnauthorized: false,
            agent: false, timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode); });
        req.on('error', () => resolve(0));
        req.on('timeout', () => { req.destroy(); resolve(0); });
    });
}

(async () => {
    await until(() => ready('sluice1') && ready('sluice2'), 'both replicas\' /readyz 200', 60000);
    /* Caddy listens once it has made its local CA and certificate. */
    let caddy = 0;
    for (const deadline = Date.now() + 60000; caddy !== 200 && Date.now() < deadline;) {
        caddy = await status('/config.js');
        if (caddy !== 200) {
            await sleep(250);
        }
    }
    assert.equal(caddy, 200, 'Caddy answers GET /config.js');
    const streams = [0, 1, 2, 3].map(() => open('/sse/plant'));
    await until(() => streams.every((s) => s.events.length >= 5),
        'events on four streams', 60000, () => JSON.stringify(streams.map((s) => [s.status, s.events.length])));
    assert.deepEqual(streams.map((s) => s.status), [200, 200, 200, 200]);
    const before = [metrics('sluice1'), metrics('sluice2')];
    console.log('sluice1', JSON.stringify(before[0]), '\nsluice2', JSON.stringify(before[1]));
    assert.deepEqual(before.map((m) => m.streams), [2, 2], 'Caddy spread four streams 2 / 2');
    for (const source of Object.keys(before[0].leaders)) {
        assert.equal(before[0].leaders[source] + before[1].leaders[source], 1,
            `exactly one ingest leader for ${source}`);
    }

    /* The ingest leader: its death also moves the buses to the other. */
    const victim = before[0].leaders.plant === 1 ? 'sluice1' : 'sluice2';
    const survivor = victim === 'sluice1' ? 'sluice2' : 'sluice1';
    const container = compose('ps', '-q', victim).trim();
    const pid = Number(execFileSync('docker', ['inspect', '-f', '{{.State.Pid}}', container],
        { encoding: 'utf8' }).trim());
    console.log(`kill -9 of ${victim}, the ingest leader (pid ${pid} on the host)`);
    process.kill(pid, 'SIGKILL');
    await until(() => streams.filter((s) => s.ended).length === 2, `${victim}'s two streams to end`);
    const cut = streams.filter((s) => s.ended);
    const kept = streams.filter((s) => !s.ended);
    await sleep(2000); /* events published while the cut streams are away */

    const resumed = cut.map((s) => {
        const last = s.events[s.events.length - 1].id;
        return { last, s: open('/sse/plant', { 'Last-Event-ID': last }) };
    });
    await until(() => resumed.every((r) => r.s.events.length >= 20), 'the resumed streams to catch up');
    await sleep(1000);
    for (const r of resumed) {
        const reference = kept[0].events.map((e) => e.id);
        const from = reference.indexOf(r.last);
        assert.ok(from >= 0, `the uncut stream has ${r.last}`);
        const got = r.s.events.map((e) => e.id);
        const n = Math.min(got.length, reference.length - from - 1);
        assert.ok(n >= 20, `at least 20 events to compare (${n})`);
        assert.equal(r.s.status, 200);
        assert.deepEqual(r.s.frames.filter((f) => f.event === 'reset'), [], 'no reset');
        assert.deepEqual(got.slice(0, n), reference.slice(from + 1, from + 1 + n),
            `resumed after ${r.last}: the same events as the uncut stream`);
        console.log(`resumed after ${r.last}: ${n} events, the same ids as the uncut stream`);
    }
    /* Docker's restart policy brings sluice1 back. */
    let after = null;
    await until(() => {
        try {
            after = [metrics('sluice1'), metrics('sluice2')];
            return true;
        } catch {
            return false;
        }
    }, `${victim} to be back`);
    const leaders = after[survivor === 'sluice1' ? 0 : 1].leaders;
    assert.ok(Object.values(leaders).every((v) => v === 1), `${survivor} took over every source`);
    console.log('after: sluice1', JSON.stringify(after[0]), '\n       sluice2', JSON.stringify(after[1]));
    console.log('compose_check: ok');
    process.exit(0);
})().catch((err) => {
    console.error(`compose_check: FAILED: ${err.stack || err}`);
    process.exit(1);
});
