'use strict';
/*
 * transport_cpu.js - a quick measurement of sluice's CPU per delivery by
 * transport: cleartext HTTP/1.1, HTTP/1.1 over TLS, and HTTP/2 over TLS
 * (streams multiplexed, STREAMS_PER_CONN per connection). Not the
 * benchmark of bench.sh (whose load generator speaks only cleartext
 * HTTP/1.1): one node process holds every stream, sluice's own CPU time
 * (utime + stime from /proc) is divided by the deliveries it counted
 * (sluice_events_delivered_total), so the client's cost does not enter
 * the figure, though it shares the machine.
 *
 *   SLUICE_BIN=build/sluice node tests/bench/transport_cpu.js [STREAMS] [RATE] [SECONDS]
 *
 * Prints one line per mode: streams, connections, deliveries, CPU per
 * delivery in microseconds (and its user and system parts), sluice's RSS.
 */
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const http2 = require('node:http2');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const lib = path.join(__dirname, '..', 'integration', 'lib');
const { makeTempDir, sleep, waitFor } = require(path.join(lib, 'procs'));
const { connectRedis, startRedis } = require(path.join(lib, 'redis'));
const { httpRequest } = require(path.join(lib, 'sse'));
const { startSluice } = require(path.join(lib, 'sluice'));
const { metricValue } = require(path.join(lib, 'attack'));

const STREAMS = Number(process.argv[2] || 1000);
const RATE = Number(process.argv[3] || 20);
const SECONDS = Number(process.argv[4] || 10);
const STREAMS_PER_CONN = 100;

/* [utime, stime] in clock ticks. */
function cpuTicks(pid) {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return [Number(f[11]), Number(f[12])];
}

function rssKiB(pid) {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/* Opens n streams; resolves with {received(), close()} once all are open. */
async function openStreams(mode, port, n) {
    let events = 0;
    let open = 0;
    const closers = [];
    /* Counts "\ndata: " per stream, a match split across reads included. */
    const onData = function onData(c) {
        const text = (this.carry || '') + c.toString('latin1');
        events += (text.match(/\ndata: /g) || []).length;
        this.carry = text.slice(-6);
    };
    if (mode === 'h2') {
        for (let i = 0; i < n; i += STREAMS_PER_CONN) {
            const s = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false,
                settings: { initialWindowSize: 1 << 20 } });
            s.on('error', () => {});
            closers.push(() => s.destroy());
            for (let j = i; j < Math.min(n, i + STREAMS_PER_CONN); j++) {
                const r = s.request({ ':path': '/r/bench' });
                r.on('response', () => { open += 1; });
                r.on('data', onData.bind({}));
                r.on('error', () => {});
            }
        }
    } else {
        const mod = mode === 'h1-tls' ? https : http;
        for (let i = 0; i < n; i++) {
            const req = mod.get({ host: '127.0.0.1', port, path: '/r/bench', agent: false,
                rejectUnauthorized: false }, (res) => { open += 1; res.on('data', onData.bind({})); });
            req.on('error', () => {});
            closers.push(() => req.destroy());
            if (i % 100 === 99) {
                await sleep(20);
            }
        }
    }
    await waitFor(() => open === n, `${n} ${mode} streams open`, 60000);
    return { received: () => events, close: () => closers.forEach((c) => c()) };
}

async function run(mode, redis, cert) {
    const tls = mode !== 'h1';
    const cfg = [
        'sources: [{name: redis, type: redis, url: "redis://127.0.0.1:' + redis.port + '"}]',
        'routes: [{path: "/r/{c}", topics: ["redis:{c}"], public: true}]',
        `stream: {max_connections: ${STREAMS + 100}, heartbeat: 60s}`,
        'logging: {level: warn}',
        ...(tls ? ['tls:', `  cert_file: ${cert.cert}`, `  key_file: ${cert.key}`,
            'http2:', '  enabled: true', '  max_concurrent_streams: 200'] : []),
        '',
    ].join('\n');
    const s = await startSluice(cfg, { tls });
    const pub = await connectRedis(redis.port);
    try {
        const streams = await openStreams(mode, s.port, STREAMS);
        await sleep(500);
        const pid = s.child.pid;
        const m0 = metricValue((await httpRequest(s.port, '/metrics', { tls })).body,
            'sluice_events_delivered_total');
        const t0 = cpuTicks(pid);
        const payload = JSON.stringify({ pad: 'x'.repeat(100) });
        const total = RATE * SECONDS;
        const start = Date.now();
        for (let i = 0; i < total; i++) {
            await pub.publish('bench', payload);
            const due = start + ((i + 1) * 1000) / RATE;
            const wait = due - Date.now();
            if (wait > 0) {
                await sleep(wait);
            }
        }
        await waitFor(() => streams.received() >= total * STREAMS, 'all deliveries', 30000).catch(() => {});
        const t1 = cpuTicks(pid);
        const m1 = metricValue((await httpRequest(s.port, '/metrics', { tls })).body,
            'sluice_events_delivered_total');
        const deliveries = m1 - m0;
        const hz = Number(execFileSync('getconf', ['CLK_TCK']).toString());
        const perDelivery = (ticks) => ((ticks / hz) * 1e6 / deliveries).toFixed(2);
        const user = t1[0] - t0[0];
        const sys = t1[1] - t0[1];
        const conns = mode === 'h2' ? Math.ceil(STREAMS / STREAMS_PER_CONN) : STREAMS;
        console.log(`${mode.padEnd(7)} streams=${STREAMS} connections=${conns} deliveries=${deliveries} ` +
            `received=${streams.received()} cpu_per_delivery_us=${perDelivery(user + sys)} ` +
            `(user ${perDelivery(user)} sys ${perDelivery(sys)}) rss_kib=${rssKiB(pid)}`);
        streams.close();
    } catch (err) {
        console.error(`${mode}: ${err.message}\n${s.stderrTail()}`);
        throw err;
    } finally {
        pub.close();
        await s.stop('SIGKILL');
    }
}

(async () => {
    const dir = makeTempDir('sluice-bench-tls-');
    const cert = { cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key') };
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
        '-keyout', cert.key, '-out', cert.cert, '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    const redis = await startRedis();
    try {
        for (const mode of (process.env.MODES || 'h1,h1-tls,h2').split(',')) {
            await run(mode, redis, cert);
        }
    } finally {
        await redis.stop();
    }
    process.exit(0);
})();
