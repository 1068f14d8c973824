'use strict';
/*
 * mqtt.test.js - the MQTT source end to end (SPEC 3, 3.1-3.3, 4, 6): the
 * real sluice against a real mosquitto, published to with mosquitto_pub.
 *
 * Covered: wildcard routes with path params and what they must not
 * match, the MQTT json envelope ("retain", "qos" as received), retained
 * messages as the snapshot of a fresh connect, binary payloads, refused
 * parameters (+ # / inside a param), a 100-level topic, max_payload at
 * exactly 1 MiB and one byte over, MQTT 5, one event per message despite
 * overlapping filters (3.1.1 and 5), a QoS 1 persistent session across a
 * sluice restart (history.dir), a broker restart under open streams, and
 * a QoS 1 flood with zero loss (10,000 messages) and the QoS 0 ingest
 * rate (20,000 messages, a stated floor of 50%).
 *
 * Each group runs its own mosquitto and sluice, so retained messages,
 * sessions and counters of one group never reach another.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const { makeTempDir, spawnTracked, waitFor, withTimeout } = require('./lib/procs');
const { mqttPublish, startMosquitto } = require('./lib/mosquitto');
const { startSluice, withLog } = require('./lib/sluice');
const { ID_RE, assertIncreasing, contentFrames, readResuming, uniquePayload } = require('./lib/fixtures');

const RUN_TAG = `${process.pid}-${Date.now()}`;

const MIB = 1 << 20;
const TIME_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/*
 * The config (without "listen:") of one mqtt source "plant" on the
 * broker at port. opts: {protocol (4), qos (1), clientId, subscribe
 * (array), historyDir}. Routes: /sites/{site}/temperature (snapshot),
 * /mqtt/{topic*} (json) and /raw/{topic*} (raw).
 */
function mqttConfig(port, opts = {}) {
    const lines = [
        'sources:',
        '  - name: plant',
        '    type: mqtt',
        `    url: mqtt://127.0.0.1:${port}`,
        `    qos: ${opts.qos ?? 1}`,
        `    client_id: ${opts.clientId || `sluice-it-${process.pid}`}`,
        '    clean_session: false',
        `    protocol: ${opts.protocol || 4}`,
    ];
    if (opts.subscribe) {
        lines.push(`    subscribe: ${JSON.stringify(opts.subscribe)}`);
    }
    lines.push(
        'routes:',
        '  - path: /sites/{site}/temperature',
        '    topics: ["plant:factory/{site}/+/temperature"]',
        '    snapshot: true',
        '  - path: /mqtt/{topic*}',
        '    topics: ["plant:{topic}"]',
        '  - path: /raw/{topic*}',
        '    topics: ["plant:{topic}"]',
        '    format: raw',
        'stream:',
        '  retry: 2s',
        '  heartbeat: 15s');
    if (opts.historyDir) {
        lines.push('history:', `  dir: ${opts.historyDir}`, '  fsync: always');
    }
    lines.push(
        'max_payload: 1MiB',
        'shutdown_grace: 2s',
        'logging: {level: info, format: text}',
        '');
    return lines.join('\n');
}

/*
 * Checks an MQTT json envelope: exactly the keys of SPEC 3.3 plus
 * "retain" and "qos" (and "encoding" when asked), the id equal to the SSE
 * id, source "plant", the time format, and the expected topic, retain
 * and qos. Returns the parsed envelope.
 */
function mqttEnvelope(frame, { topic, retain = false, qos = 1, encoding = false } = {}) {
    assert.ok(frame.id !== null && ID_RE.test(frame.id), `bad SSE id ${JSON.stringify(frame.id)}`);
    const env = JSON.parse(frame.data);
    const keys = ['id', 'payload', 'qos', 'retain', 'source', 'time', 'topic'];
    if (encoding) {
        keys.push('encoding');
    }
    assert.deepEqual(Object.keys(env).sort(), keys.sort(), `envelope keys of ${frame.data.slice(0, 300)}`);
    assert.equal(env.id, frame.id, 'envelope id equals the SSE id');
    assert.equal(env.source, 'plant');
    if (topic !== undefined) {
        assert.equal(env.topic, topic);
    }
    assert.equal(env.retain, retain, `retain of ${frame.data.slice(0, 300)}`);
    assert.equal(env.qos, qos, `qos of ${frame.data.slice(0, 300)}`);
    if (encoding) {
        assert.equal(env.encoding, 'base64');
    }
    assert.match(env.time, TIME_RE);
    return env;
}

/* Opens a stream, asserts 200 and waits for its retry: frame. */
async function open(sluice, path, headers = {}) {
    const c = await openSse(sluice.port, path, { headers });
    assert.equal(c.status, 200, `GET ${path}: ${c.status} ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, `the retry frame of ${path}`);
    return c;
}

/* The value of one metric line (e.g. 'x_total{source="plant"}'), or NaN. */
async function metric(sluice, name) {
    const res = await httpRequest(sluice.port, '/metrics');
    assert.equal(res.status, 200);
    const line = res.body.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? NaN : Number(line.slice(name.length + 1));
}

/* Publishes "marker" (QoS 1) to topic and waits until it is on a stream
 * of /mqtt/<topic>: everything the broker sent sluice before it has been
 * received then. */
async function markerArrives(own, topic, protocol) {
    const c = await open(own.sluice, `/mqtt/${topic}`);
    try {
        await mqttPublish(own.mosq.port, topic, '"marker"', { qos: 1, protocol });
        await c.waitForEvents(1);
    } finally {
        c.close();
    }
}

const RECEIVED = 'sluice_events_received_total{source="plant"}';
const TOO_LARGE = 'sluice_events_too_large_total{source="plant"}';

/*
 * Registers before/after hooks for one group: a mosquitto, then (after
 * beforeStart(port), e.g. retained publishes) a sluice with
 * mqttConfig(port, opts). Returns {mosq, sluice} as the hooks fill it.
 */
function useMqttSluice(opts = {}, beforeStart = async () => {}) {
    const own = { mosq: null, sluice: null };
    before(async () => {
        /* Unlimited queue for sluice's session: a QoS 1 flood must not be
         * dropped by the broker when sluice (ASan, a loaded machine) lags. */
        own.mosq = await startMosquitto(undefined, { extraConf: ['max_queued_messages 0'] });
        await beforeStart(own.mosq.port);
        own.sluice = await startSluice(mqttConfig(own.mosq.port, opts));
    });
    after(async () => {
        await own.sluice?.stop();
        await own.mosq?.stop();
    });
    return own;
}

/* The main cases, once per protocol (4 = MQTT 3.1.1, 5 = MQTT 5), with the
 * subscriptions derived from the routes ("#" and factory/+/+/temperature). */
for (const protocol of [4, 5]) {
    describe(`mqtt source, protocol ${protocol}`, () => {
        const RETAINED = 'factory/a/l1/temperature';
        const own = useMqttSluice({ protocol, clientId: `sluice-it-main${protocol}-${process.pid}` },
            (port) => mqttPublish(port, RETAINED, '{"v":1}', { qos: 1, retain: true, protocol }));
        const it = (name, fn) => test(name, withLog(() => own.sluice, fn));
        const pub = (topic, msg, o = { qos: 1 }) => mqttPublish(own.mosq.port, topic, msg, { protocol, ...o });

        it('a retained message is the snapshot of a fresh connect (retain:true), once', async () => {
            /* Subscribed twice ("#" for /mqtt and /raw, factory/+/+/temperature
             * for /sites): the broker sends the retained message once per
             * filter, sluice keeps one event. */
            await waitFor(async () => await metric(own.sluice, RECEIVED) >= 1, 'the retained message');
            /* The broker sent the retained copies when sluice subscribed: a
             * marker published now reaches sluice after any second copy. */
            await markerArrives(own, 'other/marker', protocol);
            assert.equal(await metric(own.sluice, RECEIVED), 2, 'one event for the retained message (+ the marker)');

            /* Move the head past it with an unrelated topic. */
            const obs = await open(own.sluice, '/mqtt/other/head');
            let head;
            try {
                await pub('other/head', '"head"');
                [head] = await obs.waitForEvents(1);
                mqttEnvelope(head, { topic: 'other/head' });
            } finally {
                obs.close();
            }

            const fresh = await open(own.sluice, '/sites/a/temperature');
            const none = await open(own.sluice, '/sites/a/temperature?snapshot=0');
            try {
                const idOnly = await fresh.waitForFrame((f) => f.data === null && f.id !== null,
                    'the id-only frame after the snapshot');
                assert.equal(idOnly.id, head.id, 'the snapshot ends with the head id');
                const content = contentFrames(fresh);
                assert.equal(content.length, 2, fresh.describe());
                assert.equal(content[1], idOnly, 'the id-only frame follows the snapshot event');
                const snap = mqttEnvelope(content[0], { topic: RETAINED, retain: true, qos: 1 });
                assert.deepEqual(snap.payload, { v: 1 });
                assertIncreasing([snap.id, head.id]);

                await pub('factory/a/l2/temperature', '{"v":2}');
                const [, live] = await fresh.waitForEvents(2);
                const env = mqttEnvelope(live, { topic: 'factory/a/l2/temperature', retain: false, qos: 1 });
                assert.deepEqual(env.payload, { v: 2 });
                assertIncreasing([head.id, live.id]);

                const [onlyLive] = await none.waitForEvents(1);
                assert.equal(onlyLive.id, live.id);
                assert.equal(contentFrames(none).length, 1, `?snapshot=0 sends no snapshot: ${none.describe()}`);
            } finally {
                fresh.close();
                none.close();
            }

            /* The snapshot's last event is now the head: no id-only frame. */
            const atHead = await open(own.sluice, '/sites/a/temperature');
            try {
                const events = await atHead.waitForEvents(2);
                assert.deepEqual(events.map((e) => JSON.parse(e.data).payload), [{ v: 1 }, { v: 2 }]);
                /* A live marker: an id-only frame would come before it. */
                await pub('factory/a/l3/temperature', '{"v":3}');
                await atHead.waitForEvents(3);
                assert.deepEqual(contentFrames(atHead).map((f) => f.data !== null && JSON.parse(f.data).payload),
                    [{ v: 1 }, { v: 2 }, { v: 3 }], atHead.describe());
            } finally {
                atHead.close();
            }
        });

        it('routes by wildcard with params; the envelope carries retain and the received qos', async () => {
            const a = await open(own.sluice, '/sites/a/temperature?snapshot=0');
            const b = await open(own.sluice, '/sites/b/temperature?snapshot=0');
            const pressure = await open(own.sluice, '/mqtt/factory/a/l1/pressure');
            try {
                await pub('factory/a/l1/temperature', '{"t":21.5}');
                await pub('factory/b/l1/temperature', '{"t":30}');
                await pub('factory/a/l1/pressure', '{"p":1013}');
                await pub('factory/a/l2/temperature', '{"t":22}');
                const [a1, a2] = await a.waitForEvents(2);
                assert.deepEqual(mqttEnvelope(a1, { topic: 'factory/a/l1/temperature' }).payload, { t: 21.5 });
                assert.deepEqual(mqttEnvelope(a2, { topic: 'factory/a/l2/temperature' }).payload, { t: 22 });
                const [b1] = await b.waitForEvents(1);
                assert.deepEqual(mqttEnvelope(b1, { topic: 'factory/b/l1/temperature' }).payload, { t: 30 });
                const [p1] = await pressure.waitForEvents(1);
                assert.deepEqual(mqttEnvelope(p1, { topic: 'factory/a/l1/pressure' }).payload, { p: 1013 });
                assertIncreasing([a1.id, b1.id, p1.id, a2.id]);

                /* The QoS as received: min(publish QoS, subscription QoS 1). */
                await pub('factory/a/q0/temperature', '"q0"', { qos: 0 });
                await pub('factory/a/q2/temperature', '"q2"', { qos: 2 });
                const [, , q0, q2] = await a.waitForEvents(4);
                assert.equal(mqttEnvelope(q0, { topic: 'factory/a/q0/temperature', qos: 0 }).payload, 'q0');
                assert.equal(mqttEnvelope(q2, { topic: 'factory/a/q2/temperature', qos: 1 }).payload, 'q2');

                /* A retained publish to a live subscription arrives with retain 0. */
                await pub('factory/a/r/temperature', '"r"', { qos: 1, retain: true });
                const [, , , , r] = await a.waitForEvents(5);
                assert.equal(mqttEnvelope(r, { topic: 'factory/a/r/temperature', retain: false }).payload, 'r');

                /* A marker on each stream's filter ends the check. */
                await pub('factory/a/mk/temperature', '"ma"');
                await pub('factory/b/mk/temperature', '"mb"');
                await pub('factory/a/l1/pressure', '"mp"');
                await a.waitForEvents(6);
                await b.waitForEvents(2);
                await pressure.waitForEvents(2);
                const tail = (c) => c.events.map((e) => JSON.parse(e.data).payload).slice(-2);
                assert.equal(a.events.length, 6, a.describe());
                assert.deepEqual(tail(a), ['r', 'ma'], a.describe());
                assert.equal(b.events.length, 2, b.describe());
                assert.deepEqual(tail(b), [{ t: 30 }, 'mb'], b.describe());
                assert.equal(pressure.events.length, 2, pressure.describe());
                assert.deepEqual(tail(pressure), [{ p: 1013 }, 'mp'], pressure.describe());
            } finally {
                a.close();
                b.close();
                pressure.close();
            }
        });

        it('a binary payload is base64 in json (with "encoding") and in raw', async () => {
            const j = await open(own.sluice, '/mqtt/factory/bin/x');
            const r = await open(own.sluice, '/raw/factory/bin/x');
            try {
                await pub('factory/bin/x', Buffer.from([0x00, 0xff, 0x80]));
                const [ev] = await j.waitForEvents(1);
                const env = mqttEnvelope(ev, { topic: 'factory/bin/x', encoding: true });
                assert.equal(env.payload, 'AP+A');
                const [raw] = await r.waitForEvents(1);
                assert.equal(raw.data, 'AP+A');
                assert.equal(raw.id, ev.id);
            } finally {
                j.close();
                r.close();
            }
        });

        it('refuses + # / inside a param with 400; {topic*} may hold "/"', async () => {
            for (const path of ['/sites/%2B/temperature', '/sites/%23/temperature',
                '/sites/a%2Fb/temperature', '/sites/+/temperature', '/sites/%23a/temperature',
                '/mqtt/factory/%2B/x', '/mqtt/factory/%23', '/mqtt/factory/a%2B']) {
                const res = await httpRequest(own.sluice.port, path);
                assert.equal(res.status, 400, `GET ${path}: ${res.status} ${res.body}`);
                assert.ok(!res.body.trim().includes('\n'), `one-line error body: ${JSON.stringify(res.body)}`);
            }
            const c = await open(own.sluice, '/mqtt/factory/a/b');
            try {
                await pub('factory/a/b/c', '"deeper"');
                await pub('factory/a/b', '"exact"');
                const [ev] = await c.waitForEvents(1);
                assert.equal(mqttEnvelope(ev, { topic: 'factory/a/b' }).payload, 'exact');
                await pub('factory/a/b', '"marker"');
                await c.waitForEvents(2);
                assert.deepEqual(c.events.map((e) => JSON.parse(e.data).payload), ['exact', 'marker'], c.describe());
            } finally {
                c.close();
            }
        });

        it('a topic with 100 levels arrives with its exact topic', async () => {
            const topic = Array.from({ length: 100 }, (_, i) => `lv${i}`).join('/');
            const c = await open(own.sluice, `/mqtt/${topic}`);
            try {
                await pub(`${topic}/more`, '"no"');
                await pub(topic, '"deep"');
                const [ev] = await c.waitForEvents(1);
                assert.equal(mqttEnvelope(ev, { topic }).payload, 'deep');
            } finally {
                c.close();
            }
        });

        it('max_payload 1MiB: a payload of exactly 1 MiB is delivered intact', async () => {
            const c = await open(own.sluice, '/mqtt/factory/big');
            try {
                /* Pseudo-random bytes: not valid UTF-8, so json sends base64. */
                const exact = Buffer.alloc(MIB);
                for (let i = 0; i < exact.length; i++) {
                    exact[i] = Math.imul(i, 2654435761) >>> 24;
                }
                exact[0] = 0xff;
                await pub('factory/big', exact);
                let ev;
                try {
                    [ev] = await c.waitForEvents(1, 10000);
                } catch (err) {
                    const slow = await metric(own.sluice, 'sluice_clients_dropped_total{reason="slow"}');
                    err.message += ` (sluice_clients_dropped_total{reason="slow"} = ${slow}: the stream`
                        + ' was cut at the default stream.max_pending 1MiB by this one event)';
                    throw err;
                }
                const env = mqttEnvelope(ev, { topic: 'factory/big', encoding: true });
                const decoded = Buffer.from(env.payload, 'base64');
                assert.equal(decoded.length, MIB);
                assert.ok(decoded.equals(exact), 'the 1 MiB payload arrives intact');
            } finally {
                c.close();
            }
        });

        it('max_payload 1MiB: 1 MiB + 1 byte is dropped and counted, the next message arrives', async () => {
            const c = await open(own.sluice, '/mqtt/factory/over');
            try {
                const tooLarge = await metric(own.sluice, TOO_LARGE);
                const received = await metric(own.sluice, RECEIVED);
                assert.ok(Number.isFinite(tooLarge), 'sluice_events_too_large_total{source="plant"} is exported');
                await pub('factory/over', Buffer.alloc(MIB + 1, 0x61));
                await pub('factory/over', '"small"');
                const [small] = await c.waitForEvents(1);
                assert.equal(mqttEnvelope(small, { topic: 'factory/over' }).payload, 'small');
                await pub('factory/over', '"marker"');
                await c.waitForEvents(2);
                assert.deepEqual(c.events.map((e) => JSON.parse(e.data).payload), ['small', 'marker'],
                    `the 1 MiB + 1 message was not delivered: ${c.describe()}`);
                assert.equal(await metric(own.sluice, TOO_LARGE), tooLarge + 1);
                assert.equal(await metric(own.sluice, RECEIVED), received + 2, 'only the small one (+ the marker) was received');
                assert.equal(c.ended, false);
            } finally {
                c.close();
            }
        });

        /* Runs mosquitto_pub -l with one message per line at qos; returns
         * the lines (n messages, then trailer) and the ms it took. */
        async function flood(topic, n, qos, trailer = []) {
            const lines = [];
            for (let i = 0; i < n; i++) {
                lines.push(String(i).padStart(8, '0') + 'x'.repeat(120));
            }
            lines.push(...trailer);
            const child = spawnTracked('mosquitto_pub',
                ['-h', '127.0.0.1', '-p', String(own.mosq.port), '-t', topic, '-q', String(qos), '-l',
                    '-V', protocol === 5 ? 'mqttv5' : 'mqttv311'],
                { stdio: ['pipe', 'pipe', 'pipe'] });
            child.stdin.end(`${lines.join('\n')}\n`);
            const start = Date.now();
            const exit = await withTimeout(child.exited, 'mosquitto_pub -l', 60000);
            assert.equal(exit.code, 0, `mosquitto_pub -l: ${child.output}`);
            return { lines, publishMs: Date.now() - start };
        }

        /* Loss must be zero: QoS 1 end to end (the broker's queue for
         * sluice is unlimited here, see useMqttSluice). The reader resumes
         * by id if sluice's slow-client cut hits it under load. */
        it('a flood of 10,000 QoS 1 messages: every one arrives once, in order', async (t) => {
            const N = 10000;
            const c = await open(own.sluice, '/raw/bench/q1');
            const reading = readResuming(own.sluice.port, '/raw/bench/q1', N, { first: c, timeoutMs: 120000 });
            const { lines, publishMs } = await flood('bench/q1', N, 1);
            const { events, cuts } = await reading;
            events.forEach((e, i) => {
                if (e.data !== lines[i]) {
                    assert.fail(`event ${i}: ${JSON.stringify(e.data)} != ${lines[i]}`);
                }
            });
            const span = Math.max(1, events[N - 1].at - events[0].at);
            t.diagnostic(`MQTT ${protocol} QoS 1: ${N} messages of 128 bytes, published in ${publishMs} ms, ` +
                `first to last received in ${span} ms = ${Math.round(N / (span / 1000))} events/s, ${cuts} cut(s)`);
        });

        /* QoS 0 may lose messages by design (broker queue limits, no
         * acks); what is measured is the ingest rate. Stated floor: at
         * least half of the flood arrives; what arrives is in order and
         * never duplicated. The end is marked in the flood itself: 20 end
         * lines on the same connection (so nothing of the flood can come
         * after them, which a marker from another connection cannot
         * promise); the read ends at the first of them, not after a time
         * window. */
        it('measures the QoS 0 ingest rate: 20,000 messages, >= 50% arrive, in order, no duplicate', async (t) => {
            const N = 20000;
            const END = `end-${RUN_TAG}-`;
            const c = await open(own.sluice, '/raw/bench/q0');
            const reading = readResuming(own.sluice.port, '/raw/bench/q0',
                (evs) => evs.length > 0 && evs[evs.length - 1].data.startsWith(END), { first: c, timeoutMs: 120000 });
            const { lines, publishMs } = await flood('bench/q0', N, 0, Array.from({ length: 20 }, (_, k) => END + k));
            const { events, cuts } = await reading;
            const got = events.map((e) => e.data).filter((d) => !d.startsWith(END));
            assert.ok(events.slice(got.length).every((e) => e.data.startsWith(END)), 'the end lines come last');
            lines.length = N;
            const index = got.map((d) => Number(d.slice(0, 8)));
            got.forEach((d, i) => assert.equal(d, lines[index[i]], `event ${i} is a flood message`));
            for (let i = 1; i < index.length; i++) {
                assert.ok(index[i] > index[i - 1], `in order, no duplicate at ${i}: ${index[i - 1]} then ${index[i]}`);
            }
            const span = Math.max(1, events[got.length - 1].at - events[0].at);
            const fraction = got.length / N;
            t.diagnostic(`MQTT ${protocol} QoS 0 ingest: ${got.length} of ${N} (${(100 * fraction).toFixed(1)}%) ` +
                `arrived, first to last in ${span} ms = ${Math.round(got.length / (span / 1000))} events/s ` +
                `(published in ${publishMs} ms, ${cuts} cut(s))`);
            assert.ok(fraction >= 0.5, `only ${got.length} of ${N} QoS 0 messages arrived (floor: 50%)`);
        });
    });
}

/* Overlapping filters: one upstream message is one event (SPEC 3.1). */
for (const protocol of [4, 5]) {
    describe(`overlapping filters factory/# and factory/+/+/temperature, protocol ${protocol}`, () => {
        const own = useMqttSluice({
            protocol,
            clientId: `sluice-it-ov${protocol}-${process.pid}`,
            subscribe: ['factory/#', 'factory/+/+/temperature'],
        }, (port) => mqttPublish(port, 'factory/r/l1/temperature', '"kept"',
            { qos: 1, retain: true, protocol }));
        const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

        it('one publish matching both filters gives exactly one event', async () => {
            await waitFor(async () => await metric(own.sluice, RECEIVED) >= 1, 'the retained message');
            await markerArrives(own, 'factory/zz/marker', protocol);
            assert.equal(await metric(own.sluice, RECEIVED), 2, 'one event for the retained message (+ a marker)');

            const sites = await open(own.sluice, '/sites/a/temperature?snapshot=0');
            const all = await open(own.sluice, '/mqtt/factory/a/l1/temperature');
            const mk = await open(own.sluice, '/mqtt/factory/a/l1/other');
            try {
                const payload = uniquePayload();
                await mqttPublish(own.mosq.port, 'factory/a/l1/temperature', payload, { qos: 1, protocol });
                await mqttPublish(own.mosq.port, 'factory/a/l1/other', '"marker"', { qos: 1, protocol });
                const [ev] = await sites.waitForEvents(1);
                const env = mqttEnvelope(ev, { topic: 'factory/a/l1/temperature' });
                assert.equal(JSON.stringify(env.payload), payload);
                const [same] = await all.waitForEvents(1);
                assert.equal(same.id, ev.id);
                /* factory/a/l1/other came after the publish under test: once
                 * it is on its stream, a second event for the publish would
                 * have been counted. */
                await mk.waitForEvents(1);
                assert.equal(await metric(own.sluice, RECEIVED), 4,
                    'retained + marker + one publish + marker = 4 events');
                assert.equal(sites.events.length, 1, sites.describe());
                assert.equal(all.events.length, 1, all.describe());

                /* A real repeat of the same message is a second event. */
                await mqttPublish(own.mosq.port, 'factory/a/l1/temperature', payload, { qos: 1, protocol });
                const [, again] = await sites.waitForEvents(2);
                assertIncreasing([ev.id, again.id]);
                assert.equal(JSON.stringify(JSON.parse(again.data).payload), payload);
            } finally {
                sites.close();
                all.close();
                mk.close();
            }
        });
    });
}

describe('QoS 1 persistent session across a sluice restart', () => {
    const historyDir = makeTempDir('sluice-mqtt-hist-');
    const own = useMqttSluice({ clientId: `sluice-it-persist-${process.pid}`, historyDir });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('messages published while sluice was stopped reach a client resuming by id', async () => {
        const c = await open(own.sluice, '/mqtt/factory/p/x');
        let last;
        try {
            await mqttPublish(own.mosq.port, 'factory/p/x', '"before"', { qos: 1 });
            [last] = await c.waitForEvents(1);
            const stopped = await own.sluice.stop('SIGTERM');
            assert.equal(stopped.code, 0, `clean exit: ${JSON.stringify(stopped)}`);
            await c.waitForEnd();
        } finally {
            c.close();
        }

        for (const n of [1, 2, 3]) {
            await mqttPublish(own.mosq.port, 'factory/p/x', `{"down":${n}}`, { qos: 1 });
        }
        await own.sluice.start();
        await waitFor(async () => await metric(own.sluice, RECEIVED) >= 3,
            'the 3 queued messages in the history', 10000);

        const resumed = await open(own.sluice, '/mqtt/factory/p/x', { 'Last-Event-ID': last.id });
        try {
            const events = await resumed.waitForEvents(3);
            assert.deepEqual(events.map((e) => mqttEnvelope(e, { topic: 'factory/p/x' }).payload),
                [{ down: 1 }, { down: 2 }, { down: 3 }]);
            assertIncreasing([last.id, ...events.map((e) => e.id)]);
            await mqttPublish(own.mosq.port, 'factory/p/x', '"marker"', { qos: 1 });
            await resumed.waitForEvents(4);
            assert.deepEqual(contentFrames(resumed).map((f) => f.data !== null && JSON.parse(f.data).payload),
                [{ down: 1 }, { down: 2 }, { down: 3 }, 'marker'], `exactly those 3 (+ the marker), no reset: ${resumed.describe()}`);
        } finally {
            resumed.close();
        }
    });
});

describe('broker restart while streams are open', () => {
    const own = useMqttSluice({ clientId: `sluice-it-restart-${process.pid}` });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('/readyz goes 503 then 200, streams stay open, new publishes arrive', async () => {
        const c = await open(own.sluice, '/sites/a/temperature');
        const d = await open(own.sluice, '/mqtt/factory/x');
        try {
            await mqttPublish(own.mosq.port, 'factory/a/l1/temperature', '"before"', { qos: 1 });
            const [first] = await c.waitForEvents(1);
            const port = own.mosq.port;
            await own.mosq.stop('SIGKILL');

            const down = await waitFor(async () => {
                const res = await httpRequest(own.sluice.port, '/readyz');
                return res.status === 503 && res;
            }, '/readyz 503 after mosquitto died');
            assert.match(down.body, /plant/, `503 body names the source: ${down.body}`);
            assert.equal(await metric(own.sluice, 'sluice_source_up{source="plant"}'), 0);

            own.mosq = await startMosquitto(port);
            await waitFor(async () => (await httpRequest(own.sluice.port, '/readyz')).status === 200,
                '/readyz 200 after mosquitto came back', 15000, 100);
            assert.equal(await metric(own.sluice, 'sluice_source_up{source="plant"}'), 1);
            assert.equal(c.ended, false, 'the stream stayed open');
            assert.equal(d.ended, false, 'the stream stayed open');

            await mqttPublish(own.mosq.port, 'factory/a/l1/temperature', '"after"', { qos: 1 });
            await mqttPublish(own.mosq.port, 'factory/x', '"x after"', { qos: 1 });
            const [, second] = await c.waitForEvents(2);
            assert.equal(mqttEnvelope(second, { topic: 'factory/a/l1/temperature' }).payload, 'after');
            assertIncreasing([first.id, second.id]);
            const [x] = await d.waitForEvents(1);
            assert.equal(mqttEnvelope(x, { topic: 'factory/x' }).payload, 'x after');
        } finally {
            c.close();
            d.close();
        }
    });
});
