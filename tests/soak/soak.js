'use strict';
/*
 * soak.js - the soak run driven by tests/soak/soak.sh (see README.md):
 * one redis-server, one sluice, SOAK_STREAMS SSE streams, steady
 * publishing, client churn and periodic redis-server restarts, sampled
 * every SOAK_SAMPLE_EVERY seconds into a CSV, with a summary at the end.
 *
 * Processes are started with the integration tests' harness
 * (tests/integration/lib), which also kills them when this process exits.
 *
 * Streams: stream i listens on /soak/{i mod K} (raw format, HTTP/1.0 so
 * the body is plain close-delimited SSE with no chunk framing). The
 * publisher PUBLISHes the global sequence number g to channel soak:{g mod
 * K}, one at a time (each waits for the previous reply), SOAK_RATE per
 * second. Redis's reply says whether sluice (the only subscriber) got it,
 * so the client knows exactly which events exist: a stream that receives
 * g after g' must have received every existing event of its channel in
 * between (a gap otherwise), and nothing twice. Because publishes are
 * sequential, the fate of every g' < g is known when g arrives.
 *
 * Churn: every SOAK_CHURN_EVERY s, SOAK_CHURN_PCT % of the streams are
 * closed by the client and replaced by fresh ones. A stream that sluice
 * closes (slow client, lifetime) reconnects after 1 s with Last-Event-ID
 * and keeps its gap accounting: the resume must fill the hole.
 *
 * Exit status: 0 when no gap, no duplicate, sluice alive throughout and
 * exiting 0 on SIGTERM; 1 otherwise.
 */
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const lib = path.join(__dirname, '..', 'integration', 'lib');
const { sleep } = require(path.join(lib, 'procs'));
const { connectRedis, startRedis } = require(path.join(lib, 'redis'));
const { httpRequest } = require(path.join(lib, 'sse'));
const { startSluice } = require(path.join(lib, 'sluice'));

function envInt(name, dflt) {
    const v = process.env[name];
    if (v === undefined || v === '') {
        return dflt;
    }
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
        throw new Error(`${name} must be a non-negative number, not ${JSON.stringify(v)}`);
    }
    return n;
}

const CFG = {
    seconds: envInt('SOAK_SECONDS', 600),
    streams: envInt('SOAK_STREAMS', 5000),
    rate: envInt('SOAK_RATE', 20),
    channels: envInt('SOAK_CHANNELS', 10),
    churnPct: envInt('SOAK_CHURN_PCT', 5),
    churnEvery: envInt('SOAK_CHURN_EVERY', 10),
    restartEvery: envInt('SOAK_REDIS_RESTART_EVERY', 120),
    sampleEvery: envInt('SOAK_SAMPLE_EVERY', 10),
    csv: process.env.SOAK_CSV || `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.csv`,
};

/* Totals over the run; the CSV gets cumulative values. */
const totals = {
    published: 0,      /* PUBLISH attempts */
    reached: 0,        /* ... that sluice received (reply >= 1) */
    expectedAtPublish: 0, /* sum over reached events of the streams open on its channel */
    received: 0,       /* events received by the client's streams */
    gaps: 0,           /* existing events a stream should have had and did not */
    dups: 0,
    serverCloses: 0,
    churned: 0,
    restarts: 0,
    badStatus: 0,
};
const reached = new Set(); /* sequence numbers that sluice received */

/* One logical client stream; it survives server-side closes (resume). */
class SoakStream {
    constructor(port, ch) {
        this.port = port;
        this.ch = ch;
        this.lastSeq = null;
        this.lastId = null;
        this.sock = null;
        this.streaming = false;
        this.retired = false;
        this.connect();
    }

    connect() {
        const sock = net.connect(this.port, '127.0.0.1');
        this.sock = sock;
        this.head = '';
        this.inBody = false;
        this.carry = '';
        this.streaming = false;
        sock.setEncoding('latin1');
        sock.on('connect', () => {
            const resume = this.lastId ? `Last-Event-ID: ${this.lastId}\r\n` : '';
            sock.write(`GET /soak/${this.ch} HTTP/1.0\r\nHost: soak\r\nAccept: text/event-stream\r\n${resume}\r\n`);
        });
        sock.on('data', (text) => this.onData(text));
        sock.on('error', () => {});
        sock.on('close', () => this.onClose(sock));
    }

    onData(text) {
        if (!this.inBody) {
            this.head += text;
            const end = this.head.indexOf('\r\n\r\n');
            if (end < 0) {
                return;
            }
            if (!/^HTTP\/1\.[01] 200/.test(this.head)) {
                totals.badStatus += 1;
                this.sock.destroy();
                return;
            }
            this.inBody = true;
            this.streaming = true;
            text = this.head.slice(end + 4);
        }
        const lines = (this.carry + text).split('\n');
        this.carry = lines.pop();
        for (const line of lines) {
            if (line.startsWith('id: ')) {
                this.lastId = line.slice(4);
            } else if (line.startsWith('data: ')) {
                this.onEvent(Number(line.slice(6)));
            }
        }
    }

    /* Gap and duplicate accounting for event g of this stream's channel. */
    onEvent(g) {
        totals.received += 1;
        reached.add(g);
        if (this.lastSeq !== null) {
            if (g <= this.lastSeq) {
                totals.dups += 1;
                return;
            }
            for (let s = this.lastSeq + CFG.channels; s < g; s += CFG.channels) {
                if (reached.has(s)) {
                    totals.gaps += 1;
                }
            }
        }
        this.lastSeq = g;
    }

    onClose(sock) {
        if (sock !== this.sock || this.retired) {
            return;
        }
        this.streaming = false;
        totals.serverCloses += 1;
        setTimeout(() => {
            if (!this.retired) {
                this.connect();
            }
        }, 1000);
    }

    retire() {
        this.retired = true;
        this.streaming = false;
        this.sock.destroy();
    }
}

/* {rssKb, fds} of a process. */
function procStats(pid) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return {
        rssKb: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)[1]),
        fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    };
}

async function scrape(port) {
    const body = (await httpRequest(port, '/metrics', { timeoutMs: 5000 })).body;
    const get = (series) => {
        const m = new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(body);
        return m ? Number(m[1]) : NaN;
    };
    return {
        connections: get('sluice_connections'),
        eventsReceived: get('sluice_events_received_total{source="cache"}'),
        delivered: get('sluice_events_delivered_total'),
        dropped: get('sluice_clients_dropped_total{reason="slow"}'),
    };
}

function sluiceConfig(redisPort) {
    return [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /soak/{ch}',
        '    topics: ["cache:soak:{ch}"]',
        '    format: raw',
        'stream:',
        '  retry: 2s',
        '  heartbeat: 15s',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

/* Publishes CFG.rate events/s until state.stop; survives redis restarts. */
async function publishLoop(state, streams) {
    let pub = null;
    const period = 1000 / CFG.rate;
    let next = Date.now();
    for (let g = 1; !state.stop; g++) {
        totals.published += 1;
        try {
            if (pub === null) {
                const c = await connectRedis(state.redisPort);
                c.socket.on('close', () => {
                    if (pub === c) {
                        pub = null;
                    }
                });
                pub = c;
            }
            const n = await pub.publish(`soak:${g % CFG.channels}`, String(g));
            if (n >= 1) {
                reached.add(g);
                totals.reached += 1;
                totals.expectedAtPublish += streams.filter((s) => s.streaming && s.ch === g % CFG.channels).length;
            }
        } catch {
            /* redis is down: this event does not exist */
        }
        next += period;
        await sleep(Math.max(0, next - Date.now()));
    }
    pub?.close();
}

function fmtMb(kb) {
    return `${(kb / 1024).toFixed(1)} MB`;
}

async function main() {
    console.log(`soak: ${CFG.seconds} s, ${CFG.streams} streams on ${CFG.channels} channels, ${CFG.rate} ev/s, ` +
        `churn ${CFG.churnPct}% every ${CFG.churnEvery} s, redis restart every ${CFG.restartEvery} s; CSV ${CFG.csv}`);
    let redis = await startRedis();
    const sluice = await startSluice(sluiceConfig(redis.port));
    const pid = sluice.child.pid;
    const state = { stop: false, redisPort: redis.port };

    /* Ramp up: 100 streams every 100 ms. */
    const streams = [];
    for (let i = 0; i < CFG.streams; i++) {
        streams.push(new SoakStream(sluice.port, i % CFG.channels));
        if (i % 100 === 99) {
            await sleep(100);
        }
    }
    const rampDeadline = Date.now() + 60000;
    while (streams.some((s) => !s.streaming) && Date.now() < rampDeadline) {
        await sleep(200);
    }
    console.log(`soak: ${streams.filter((s) => s.streaming).length} streams open`);

    const csv = fs.openSync(CFG.csv, 'w');
    fs.writeSync(csv, 'elapsed_s,rss_kb,fds,sluice_connections,client_streams,published,reached,' +
        'events_received,delivered_metric,expected_at_publish,client_received,client_expected,gaps,dups,' +
        'server_closes,slow_drops,churned,redis_restarts\n');
    const samples = [];
    const t0 = Date.now();
    const publishing = publishLoop(state, streams);
    let nextSample = t0 + CFG.sampleEvery * 1000;
    /* Churn half a period out of phase with sampling, so a sample does
     * not catch sluice between the closes and the reconnects. */
    let nextChurn = t0 + CFG.churnEvery * 500;
    let nextRestart = CFG.restartEvery > 0 ? t0 + CFG.restartEvery * 1000 : Infinity;
    let died = null;
    const end = t0 + CFG.seconds * 1000;

    while (Date.now() < end && died === null) {
        await sleep(100);
        if (sluice.child === null || sluice.child.exitCode !== null || sluice.child.signalCode !== null) {
            died = `sluice exited (${sluice.child?.exitCode ?? sluice.child?.signalCode})`;
            break;
        }
        const now = Date.now();
        if (now >= nextChurn) {
            nextChurn += CFG.churnEvery * 1000;
            const n = Math.round(streams.length * CFG.churnPct / 100);
            for (let k = 0; k < n; k++) {
                const i = Math.floor(Math.random() * streams.length);
                const old = streams[i];
                old.retire();
                streams[i] = new SoakStream(sluice.port, old.ch);
                totals.churned += 1;
            }
        }
        if (now >= nextRestart && now + 5000 < end) {
            nextRestart += CFG.restartEvery * 1000;
            await redis.stop('SIGKILL');
            await sleep(1000);
            redis = await startRedis(redis.port);
            totals.restarts += 1;
            console.log(`soak: ${((Date.now() - t0) / 1000).toFixed(0)} s: redis-server restarted`);
        }
        if (now >= nextSample) {
            nextSample += CFG.sampleEvery * 1000;
            const p = procStats(pid);
            const m = await scrape(sluice.port);
            const row = {
                elapsed: Math.round((Date.now() - t0) / 1000), ...p, ...m,
                clientStreams: streams.filter((s) => s.streaming).length, ...totals,
            };
            samples.push(row);
            fs.writeSync(csv, [row.elapsed, row.rssKb, row.fds, row.connections, row.clientStreams,
                row.published, row.reached, row.eventsReceived, row.delivered, row.expectedAtPublish,
                totals.received, totals.received + totals.gaps, row.gaps, row.dups, row.serverCloses,
                row.dropped, row.churned, row.restarts].join(',') + '\n');
            console.log(`soak: ${row.elapsed} s: RSS ${fmtMb(row.rssKb)}, ${row.fds} fds, ` +
                `${row.connections} streams, ${totals.received} received, ${totals.gaps} gaps, ${totals.dups} dups`);
        }
    }
    state.stop = true;
    await publishing;
    fs.closeSync(csv);
    await sleep(1000);
    streams.forEach((s) => s.retire());

    const exit = died === null ? await sluice.stop('SIGTERM') : null;
    await redis.stop();
    report(samples, exit, died, sluice.stderr);
}

/* Prints the summary; sets the exit status. */
function report(samples, exit, died, stderr) {
    const col = (k) => samples.map((s) => s[k]);
    const min = (k) => Math.min(...col(k));
    const max = (k) => Math.max(...col(k));
    const expected = totals.received + totals.gaps;
    const ratio = expected > 0 ? totals.received / expected : NaN;
    const last = samples[samples.length - 1];
    const metricRatio = last && last.expectedAtPublish > 0 ? last.delivered / last.expectedAtPublish : NaN;
    const sanitizer = /ERROR: AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr);
    console.log('--- soak summary ---');
    if (samples.length > 0) {
        console.log(`RSS            min ${fmtMb(min('rssKb'))}, max ${fmtMb(max('rssKb'))}`);
        console.log(`fds            min ${min('fds')}, max ${max('fds')}`);
        console.log(`open streams   min ${min('connections')}, max ${max('connections')}`);
        console.log(`delivered/expected (metrics, vs streams open at publish) ${metricRatio.toFixed(4)}`);
    }
    console.log(`publishes      ${totals.published}, reached sluice ${totals.reached}`);
    console.log(`delivered/expected (client, exact) ${totals.received}/${expected} = ${ratio.toFixed(6)}`);
    console.log(`gaps ${totals.gaps}, duplicates ${totals.dups}, non-200 answers ${totals.badStatus}`);
    console.log(`server closes ${totals.serverCloses} (resumed with Last-Event-ID), churned ${totals.churned}, ` +
        `redis restarts ${totals.restarts}`);
    console.log(`sluice: ${died || `exit ${JSON.stringify(exit)}`}${sanitizer ? ', SANITIZER REPORT in stderr' : ''}`);
    const ok = died === null && exit && exit.code === 0 && totals.gaps === 0 && totals.dups === 0 &&
        totals.badStatus === 0 && !sanitizer && samples.length > 0;
    console.log(ok ? 'soak: PASS' : 'soak: FAIL');
    if (!ok) {
        console.log(stderr.split('\n').slice(-30).join('\n'));
    }
    process.exitCode = ok ? 0 : 1;
}

main().then(() => process.exit()).catch((err) => {
    console.error(`soak: ${err.stack || err}`);
    process.exit(1);
});
