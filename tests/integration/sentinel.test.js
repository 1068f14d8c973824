'use strict';
/*
 * sentinel.test.js - sluice's history behind Redis Sentinel
 * (history.redis: redis+sentinel://...), across two real failovers under
 * a publisher (issue #11).
 *
 * One master and one replica (redis-server --replicaof), three sentinels
 * (quorum 2, down-after 1 s, failover-timeout 2 s), mosquitto as the bus
 * (QoS 1, persistent session: every message the broker acknowledged to
 * the publisher reaches the ingest leader, which must get it into the
 * log), two sluice replicas with
 *   history.redis: redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0
 * and a reader on each replica that resumes with Last-Event-ID whenever
 * its stream ends (fixtures.readResuming: a reset or an id that does not
 * increase fails it).
 *
 * Messages 1..N are published one at a time; at 20 the test asks for
 * `SENTINEL FAILOVER mymaster` (the replica is promoted, the old master
 * demoted), at 40 it kills -9 the new master (the sentinels agree it is
 * down and promote the old one again) and goes on publishing while the
 * sentinels decide. Both readers must end with exactly 1..N, in order,
 * once each, with no reset: nothing the broker acknowledged is lost,
 * nothing is repeated.
 *
 * The manual failover happens between writes: Sentinel does not pause
 * the old master, so an append it takes after the replica's last sync is
 * lost with it. The leader appends that batch again (its WAIT never saw
 * a replica have it), but a browser that was sent the lost entry must
 * start over: a reset, as the README says, checked in
 * replica_log.test.js. Each failover waits until the replica has what
 * the master has.
 *
 * Until sluice accepts a redis+sentinel URL (`sluice --check` refuses
 * the config) the test is skipped and says why.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { waitFor } = require('./lib/procs');
const { connectRedis, startRedis, startSentinel } = require('./lib/redis');
const { mqttPublish, startMosquitto } = require('./lib/mosquitto');
const { readResuming } = require('./lib/fixtures');
const { openSse } = require('./lib/sse');
const { Sluice, runSluice, writeConfig } = require('./lib/sluice');
const { freePort } = require('./lib/procs');

const MASTER = 'mymaster';
const LEASE_MS = 1000;
const STEP_MS = 30000;
const N = 60;

const ctx = { redis: [], sentinels: [], mosquitto: null, replicas: [], skip: null };

function sluiceConfig() {
    const hosts = ctx.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',');
    return [
        'sources:',
        '  - name: plant',
        '    type: mqtt',
        `    url: mqtt://127.0.0.1:${ctx.mosquitto.port}`,
        '    qos: 1',
        `    client_id: sluice-it-sentinel-${process.pid}`,
        '    clean_session: false',
        'routes:',
        '  - path: /plant/{site}',
        '    topics: ["plant:factory/{site}/+"]',
        'history:',
        `  redis: redis+sentinel://${hosts}/${MASTER}/0`,
        `  key: sluice-it-sentinel-${process.pid}`,
        'stream:',
        '  retry: 500ms',
        '  heartbeat: 15s',
        'shutdown_grace: 1s',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

/* Runs one command on a fresh connection to port. */
async function redisCommand(port, ...args) {
    const c = await connectRedis(port);
    try {
        return await c.command(...args);
    } finally {
        c.close();
    }
}

/* The master's port as sentinel s sees it. */
async function masterPort(s) {
    const [, port] = await redisCommand(s.port, 'SENTINEL', 'get-master-addr-by-name', MASTER);
    return Number(port);
}

/* SENTINEL MASTER's flat [key, value, ...] reply as an object. */
async function sentinelMaster(s) {
    const flat = await redisCommand(s.port, 'SENTINEL', 'MASTER', MASTER);
    const o = {};
    for (let i = 0; i + 1 < flat.length; i += 2) {
        o[flat[i]] = flat[i + 1];
    }
    return o;
}

/* INFO replication of port as an object. */
async function replication(port) {
    const text = await redisCommand(port, 'INFO', 'replication');
    return Object.fromEntries(text.split('\r\n').filter((l) => l.includes(':')).map((l) => l.split(':')));
}

/* Waits until every sentinel names masterPort as the master, knows the
 * two other sentinels and one replica, and that replica is in sync. */
async function waitForSettled(master, replicaPort, what) {
    await waitFor(async () => {
        for (const s of ctx.sentinels) {
            const m = await sentinelMaster(s);
            if (Number(m.port) !== master || Number(m['num-other-sentinels']) !== 2 ||
                Number(m['num-slaves']) !== 1 || m.flags !== 'master') {
                return false;
            }
        }
        const r = await replication(replicaPort);
        return r.role === 'slave' && Number(r.master_port) === master && r.master_link_status === 'up';
    }, what, STEP_MS, 200);
}

/* Until the replica has what the master has. */
async function waitForReplicated(master, replica) {
    await waitFor(async () => {
        const m = await replication(master.port);
        const r = await replication(replica.port);
        return m.master_repl_offset === r.slave_repl_offset;
    }, 'the replica to have what the master has', STEP_MS, 50);
}

before(async () => {
    ctx.mosquitto = await startMosquitto();
    const master = await startRedis();
    const replica = await startRedis(undefined, { args: ['--replicaof', '127.0.0.1', String(master.port)] });
    ctx.redis = [master, replica];
    ctx.sentinels = await Promise.all([1, 2, 3].map(() => startSentinel(MASTER, master.port, 2)));

    /* Skipped (with the reason) until sluice knows this URL scheme. */
    const check = await runSluice(['--check', '-c', writeConfig(`listen: 127.0.0.1:1\n${sluiceConfig()}`)]);
    if (check.code !== 0) {
        ctx.skip = `sluice --check refuses history.redis with redis+sentinel:// ` +
            `(not implemented in this build?): ${(check.stderr || check.stdout).trim().split('\n')[0]}`;
        return;
    }
    await waitForSettled(master.port, replica.port, 'sentinels, master and replica to settle');
    const env = { ...process.env, SLUICE_INGEST_LEASE_MS: String(LEASE_MS) };
    const ports = [await freePort(), await freePort()];
    ctx.replicas = ports.map((p) => new Sluice(sluiceConfig(), p, env));
    await Promise.all(ctx.replicas.map((r) => r.start()));
});

after(async () => {
    await Promise.all(ctx.replicas.map((r) => r.stop('SIGKILL')));
    await Promise.all([...ctx.sentinels, ...ctx.redis, ctx.mosquitto].filter(Boolean).map((x) => x.stop()));
});

describe('history.redis through Redis Sentinel', () => {
    test('two failovers under a publisher: every message once, in order, no reset', { timeout: 120000 },
        async (t) => {
            if (ctx.skip) {
                t.skip(ctx.skip);
                return;
            }
            try {
                const [first, second] = ctx.redis;
                /* N is published last: once it arrived, everything before
                 * it must have (one topic, QoS 1, one publisher). */
                const payload = (e) => Number(JSON.parse(e.data).payload);
                /* Both streams open before 1 is published: a stream with
                 * no Last-Event-ID starts from what comes next. */
                const firsts = await Promise.all(ctx.replicas.map(async (r) => {
                    const c = await openSse(r.port, '/plant/s1');
                    await c.waitForFrame((f) => f.retry !== null, 'the stream to open');
                    return c;
                }));
                const readers = ctx.replicas.map((r, i) => readResuming(r.port, '/plant/s1',
                    (evs) => evs.some((e) => payload(e) >= N), { timeoutMs: 100000, first: firsts[i] }));
                readers.forEach((p) => p.catch(() => {})); /* awaited below */
                const publish = (n) => mqttPublish(ctx.mosquitto.port, 'factory/s1/value', String(n), { qos: 1 });
                let n = 0;
                while (n < 20) {
                    await publish(++n);
                }

                /* 1: a manual failover to the replica, between writes
                 * (see the top of the file): 20 is in the log, and the
                 * replica has it. */
                await waitFor(async () => Number(await redisCommand(first.port, 'HGET',
                    `sluice-it-sentinel-${process.pid}:meta`, 'seq')) === 20, 'the leader to append 20', STEP_MS, 50);
                await waitForReplicated(first, second);
                let at = Date.now();
                assert.equal(await redisCommand(ctx.sentinels[0].port, 'SENTINEL', 'FAILOVER', MASTER), 'OK');
                await waitFor(async () => (await masterPort(ctx.sentinels[0])) === second.port,
                    'the sentinels to promote the replica', STEP_MS, 100);
                t.diagnostic(`SENTINEL FAILOVER: new master after ${Date.now() - at} ms`);
                await waitForSettled(second.port, first.port, 'the old master to follow the new one');
                while (n < 40) {
                    await publish(++n);
                }

                /* 2: kill -9 the master; the sentinels promote the other.
                 * First the replica catches up with what the master has:
                 * replication is asynchronous, and an entry the master
                 * took but never passed on is lost with it (a browser
                 * that saw it gets a reset, see README: Sentinel). What
                 * is in flight from here on must survive. */
                await waitForReplicated(second, first);
                at = Date.now();
                await second.stop('SIGKILL');
                while (n < 50) {
                    await publish(++n);
                }
                await waitFor(async () => (await masterPort(ctx.sentinels[1])) === first.port,
                    'the sentinels to promote the old master again', STEP_MS, 100);
                t.diagnostic(`kill -9 of the master: new master after ${Date.now() - at} ms`);
                while (n < N) {
                    await publish(++n);
                }

                const results = await Promise.all(readers);
                results.forEach(({ events, cuts }, i) => {
                    const got = events.map(payload);
                    assert.deepEqual(got, Array.from({ length: N }, (_, k) => k + 1),
                        `replica ${i + 1}: exactly 1..${N}, in order, once each`);
                    t.diagnostic(`replica ${i + 1}: ${N} events, resumed ${cuts} times`);
                });
                assert.deepEqual(results[1].events.map((e) => e.id), results[0].events.map((e) => e.id),
                    'the same ids on both replicas');
            } catch (err) {
                const tails = ctx.replicas.map((r, i) => `--- sluice ${i + 1} stderr (tail) ---\n${r.stderrTail(20)}`);
                try {
                    err.message += `\n${tails.join('\n')}`;
                } catch { /* read-only message */ }
                throw err;
            }
        });
});
