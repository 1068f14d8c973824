'use strict';
/*
 * attack.js - helpers for security.test.js: hostile raw-TCP clients and
 * the measurements that judge sluice under them (its resident memory from
 * /proc/PID/status, the latency of /healthz for an innocent client, and
 * its sockets' queues from /proc/net/tcp).
 *
 * Every helper is bounded in bytes and time: an attack stops at its byte
 * budget, at its deadline, or when sluice closes the connection.
 */
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');

/* sluice's resident set size in KiB (VmRSS). */
function vmRssKiB(pid) {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
}

/* One GET /healthz on a fresh connection; resolves with its latency in ms
 * (Infinity when it failed or took over timeoutMs). */
function healthzOnce(port, timeoutMs = 2000) {
    const start = process.hrtime.bigint();
    return new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode === 200
                ? Number(process.hrtime.bigint() - start) / 1e6 : Infinity));
        });
        req.setTimeout(timeoutMs, () => { req.destroy(); resolve(Infinity); });
        req.on('error', () => resolve(Infinity));
    });
}

/*
 * Probes /healthz every intervalMs and samples sluice's RSS until stop()
 * is called; stop() resolves with {latencies, p50, p99, max, rssMaxKiB}.
 */
function startProbe(port, pid, intervalMs = 20) {
    const latencies = [];
    let rssMaxKiB = vmRssKiB(pid);
    let running = true;
    const loop = (async () => {
        while (running) {
            latencies.push(await healthzOnce(port));
            rssMaxKiB = Math.max(rssMaxKiB, vmRssKiB(pid));
            await new Promise((r) => setTimeout(r, intervalMs));
        }
    })();
    return {
        async stop() {
            running = false;
            await loop;
            const sorted = [...latencies].sort((a, b) => a - b);
            const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
            return { latencies, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1], rssMaxKiB };
        },
    };
}

/* Connects; resolves with the socket once connected. */
function connect(port) {
    return new Promise((resolve, reject) => {
        const sock = net.connect({ host: '127.0.0.1', port }, () => resolve(sock));
        sock.once('error', reject);
    });
}

/*
 * Opens a raw GET on path and resolves with {sock, head} once the
 * response head arrived (body bytes that came with it are in sock.rest;
 * what arrives later is counted in sock.received). The socket's 'error'
 * is recorded on sock.failure.
 */
async function rawGet(port, path, extraHeaders = '') {
    const sock = await connect(port);
    sock.received = 0;
    sock.failure = null;
    sock.ended = false;
    sock.on('error', (err) => { sock.failure = err; });
    sock.on('end', () => { sock.ended = true; });
    let buf = Buffer.alloc(0);
    const head = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no response head for ${path}`)), 5000);
        const onData = (chunk) => {
            sock.received += chunk.length;
            buf = Buffer.concat([buf, chunk]);
            const end = buf.indexOf('\r\n\r\n');
            if (end >= 0) {
                clearTimeout(timer);
                sock.off('data', onData);
                sock.on('data', (c) => { sock.received += c.length; });
                sock.rest = buf.subarray(end + 4); /* body bytes that came with the head */
                resolve(buf.subarray(0, end).toString('latin1'));
            }
        };
        sock.on('data', onData);
        sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extraHeaders}\r\n`);
    });
    return { sock, head };
}

/*
 * Writes up to `bytes` bytes of filler to sock, honouring backpressure,
 * until the budget is spent, deadlineMs passes or the socket fails.
 * Resolves with {written, error} (written: what the socket accepted).
 */
function flood(sock, bytes, deadlineMs, chunkSize = 64 * 1024, chunk = null) {
    const data = chunk || Buffer.alloc(chunkSize, 'x');
    const until = Date.now() + deadlineMs;
    return new Promise((resolve) => {
        let written = 0;
        let done = false;
        const finish = (error) => {
            if (!done) {
                done = true;
                resolve({ written, error: error || null });
            }
        };
        sock.on('error', (err) => finish(err));
        sock.on('close', () => finish(sock.failure));
        const pump = () => {
            while (!done && written < bytes && Date.now() < until) {
                written += data.length;
                if (!sock.write(data)) {
                    sock.once('drain', pump);
                    return;
                }
            }
            if (written >= bytes || Date.now() >= until) {
                finish(null);
            }
        };
        /* A stalled write (peer not reading) still ends at the deadline. */
        setTimeout(() => finish(null), deadlineMs + 100).unref();
        pump();
    });
}

/*
 * sluice's TCP sockets whose local port is `port`, from /proc/net/tcp:
 * [{state, txQueue, rxQueue, remotePort}]. States are the kernel's hex
 * codes: '01' ESTABLISHED, '04' FIN_WAIT1, '0A' LISTEN, ...
 */
function tcpSockets(port) {
    const out = [];
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
        let text = '';
        try {
            text = fs.readFileSync(file, 'utf8');
        } catch {
            continue;
        }
        for (const line of text.split('\n').slice(1)) {
            const f = line.trim().split(/\s+/);
            if (f.length < 5) {
                continue;
            }
            const local = f[1].split(':');
            const remote = f[2].split(':');
            if (parseInt(local[1], 16) !== port) {
                continue;
            }
            const [tx, rx] = f[4].split(':').map((h) => parseInt(h, 16));
            out.push({ state: f[3], txQueue: tx, rxQueue: rx, remotePort: parseInt(remote[1], 16) });
        }
    }
    return out;
}

/* True for a sanitizer build of sluice (ASan's quarantine holds freed
 * memory and its checks slow everything): memory and latency bounds are
 * then reported, not enforced. */
function sanitizedBinary(bin) {
    try {
        return fs.readFileSync(bin).includes('AddressSanitizer');
    } catch {
        return false;
    }
}

/* The value of one metric line (exact name with labels) in /metrics text. */
function metricValue(text, name) {
    for (const line of text.split('\n')) {
        if (line.startsWith(`${name} `)) {
            return Number(line.slice(name.length + 1));
        }
    }
    return null;
}

module.exports = { sanitizedBinary, connect, flood, healthzOnce, metricValue, rawGet, startProbe, tcpSockets, vmRssKiB };
