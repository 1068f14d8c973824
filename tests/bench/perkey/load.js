'use strict';
/*
 * load.js - the per-key benchmark's producer and browsers in one process.
 *
 * Opens KEYS SSE streams GET <base>/<run>-<i> on an HTTP server (sluice
 * or xread_server.js), then XADDs RATE entries per second to every key
 * chat:<run>-<i> for SECONDS, each entry's field t holding the moment it
 * was sent (process.hrtime, CLOCK_MONOTONIC), and measures what comes
 * back: entries received against sent, and the latency from XADD to the
 * client. It reads the CPU time of the server's and redis-server's pids
 * from /proc over the publishing window. Prints one line:
 *
 *   RESULT sent=.. received=.. p50_ms=.. p99_ms=.. server_cpu_s=.. redis_cpu_s=..
 *
 *   node load.js BASE_URL REDIS_PORT SERVER_PID REDIS_PID KEYS RATE SECONDS
 *
 * With BASE_URL "none" no stream is opened and SERVER_PID is ignored: the
 * Redis CPU of the XADDs alone, to subtract from the other runs.
 */
const fs = require('node:fs');
const http = require('node:http');
const { connectRedis } = require('../../integration/lib/redis');

const [base, redisPort, serverPid, redisPid] = process.argv.slice(2, 6);
const [keys, rate, seconds] = process.argv.slice(6, 9).map(Number);
const run = `b${process.pid}`;
const latencies = [];
let received = 0;

function cpuSeconds(pid) {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; /* utime + stime, at 100 Hz */
}

function openStream(i) {
    return new Promise((resolve, reject) => {
        const req = http.get(`${base}/${run}-${i}`, { agent: false }, (res) => {
            if (res.statusCode !== 200) {
                reject(new Error(`stream ${i}: ${res.statusCode}`));
                return;
            }
            let carry = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => {
                const text = carry + chunk;
                const lines = text.split('\n');
                carry = lines.pop();
                const now = process.hrtime.bigint();
                for (const line of lines) {
                    if (line.startsWith('data: ')) {
                        received++;
                        latencies.push(Number(now - BigInt(line.slice(6))) / 1e6);
                    }
                }
            });
            resolve(req);
        });
        req.on('error', reject);
    });
}

function percentile(sorted, p) {
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN;
}

async function main() {
    const streams = [];
    const readers = base !== 'none';
    for (let i = 0; readers && i < keys; i += 100) {
        const batch = [];
        for (let j = i; j < Math.min(keys, i + 100); j++) {
            batch.push(openStream(j));
        }
        streams.push(...await Promise.all(batch));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const pub = await connectRedis(Number(redisPort));
    pub.timeoutMs = 60000;
    const serverCpu = () => (readers ? cpuSeconds(serverPid) : 0);
    const cpu0 = [serverCpu(), cpuSeconds(redisPid)];
    const tickMs = 20;
    const perTick = (keys * rate * tickMs) / 1000;
    let sent = 0;
    let carry = 0;
    const start = Date.now();
    let next = 0;
    while (Date.now() - start < seconds * 1000) {
        carry += perTick;
        const n = Math.floor(carry);
        carry -= n;
        const replies = [];
        for (let k = 0; k < n; k++) {
            const key = `chat:${run}-${next}`;
            next = (next + 1) % keys;
            replies.push(pub.command('XADD', key, '*', 't', String(process.hrtime.bigint())));
            sent++;
        }
        await Promise.all(replies);
        const wait = start + Math.ceil((Date.now() - start + 1) / tickMs) * tickMs - Date.now();
        await new Promise((r) => setTimeout(r, Math.max(0, wait)));
    }
    const elapsed = (Date.now() - start) / 1000;
    const deadline = Date.now() + 10000;
    while (readers && received < sent && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
    }
    const cpu1 = [serverCpu(), cpuSeconds(redisPid)];
    latencies.sort((a, b) => a - b);
    console.log(`RESULT sent=${sent} received=${received} seconds=${elapsed.toFixed(1)} ` +
        `p50_ms=${percentile(latencies, 0.5).toFixed(2)} p99_ms=${percentile(latencies, 0.99).toFixed(2)} ` +
        `server_cpu_s=${(cpu1[0] - cpu0[0]).toFixed(2)} redis_cpu_s=${(cpu1[1] - cpu0[1]).toFixed(2)}`);
    for (const s of streams) {
        s.destroy();
    }
    pub.close();
    process.exit(0);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
