'use strict';
/*
 * deploy/demo/publisher.js - the demo's data source: a small factory.
 *
 * Two production lines with two machines each publish temperature and
 * pressure readings to MQTT, and a shop publishes orders to Redis:
 *
 *   MQTT  factory/<line>/<sensor>/temperature   {"value":61.3,"unit":"C"}
 *   MQTT  factory/<line>/<sensor>/pressure      {"value":4.12,"unit":"bar"}
 *         (QoS 1, retained: a late subscriber gets the last value at once)
 *   Redis PUBLISH orders:<region>               {"id":"A-10042","region":"eu",...}
 *
 * sluice (deploy/demo/sluice.yaml) subscribes to both and serves them to
 * the dashboard as Server-Sent Events. About READINGS_PER_SECOND readings
 * (default 5) and one order every 1-2 s.
 *
 * Environment: MQTT_URL (mqtt://[user:pass@]host:port, default
 * mqtt://127.0.0.1:1883), REDIS_URL (redis://[:pass@]host:port, default
 * redis://127.0.0.1:6379), READINGS_PER_SECOND.
 *
 * No npm dependencies, on purpose: the demo must run from a bare Debian
 * node and from the stock node image in docker-compose (where there is no
 * mosquitto_pub). So this file carries two tiny clients: an MQTT 3.1.1
 * publisher (CONNECT, PUBLISH QoS 0/1, PINGREQ, DISCONNECT) and a Redis
 * RESP writer (AUTH, PUBLISH). They implement only what a publisher needs;
 * a real application would use the `mqtt` and `redis` packages. Both
 * reconnect with capped backoff, and readings produced while a broker is
 * away are dropped: this is a live feed, not a queue.
 */
const net = require('node:net');

const MQTT_URL = process.env.MQTT_URL || 'mqtt://127.0.0.1:1883';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const READINGS_PER_SECOND = Number(process.env.READINGS_PER_SECOND || 5);

/* The plant: every sensor has a temperature and a pressure that drift
 * around a set point. The set points keep all temperatures in one range
 * so that the dashboard's chart can share one axis. */
const SENSORS = [
    { line: 'a', name: 'mixer', temperature: 62, pressure: 4.2 },
    { line: 'a', name: 'pump', temperature: 48, pressure: 6.8 },
    { line: 'b', name: 'extruder', temperature: 74, pressure: 5.5 },
    { line: 'b', name: 'conveyor', temperature: 36, pressure: 1.6 },
];
const REGIONS = ['eu', 'us', 'apac'];
const ITEMS = [
    { item: 'valve', price: 42.5 },
    { item: 'gasket', price: 3.9 },
    { item: 'bearing', price: 18.0 },
    { item: 'sensor', price: 129.0 },
    { item: 'pump', price: 610.0 },
];

function log(message) {
    process.stderr.write(`publisher: ${message}\n`);
}

/* Parses "scheme://[user[:pass]@]host:port" into its parts. The password
 * is kept for the handshake only and never logged: `where` is host:port. */
function parseBrokerUrl(text, defaultPort) {
    const url = new URL(text);
    return {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port || defaultPort),
        username: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        where: `${url.hostname}:${url.port || defaultPort}`,
    };
}

/*
 * A connection that reconnects by itself with capped exponential backoff
 * (0.5 s doubling to 10 s). Subclasses implement onConnect(socket) and
 * onData(chunk); `ready` is true once the protocol handshake is done.
 */
class ReconnectingClient {
    constructor(label, target) {
        this.label = label;
        this.target = target;
        this.socket = null;
        this.ready = false;
        this.stopped = false;
        this.backoffMs = 500;
        this.timer = null;
        this.dropped = 0;
    }

    start() {
        if (this.stopped) {
            return;
        }
        const socket = net.connect(this.target.port, this.target.host);
        this.socket = socket;
        socket.setNoDelay(true);
        socket.on('connect', () => {
            this.backoffMs = 500;
            this.onConnect(socket);
        });
        socket.on('data', (chunk) => this.onData(chunk));
        socket.on('error', (err) => {
            if (this.ready || this.backoffMs === 500) {
                log(`${this.label} ${this.target.where}: ${err.code || err.message}`);
            }
        });
        socket.on('close', () => this.onClose(socket));
    }

    onClose(socket) {
        if (socket !== this.socket) {
            return;
        }
        const wasReady = this.ready;
        this.ready = false;
        this.socket = null;
        this.onDisconnect();
        if (this.stopped) {
            return;
        }
        if (wasReady) {
            log(`${this.label} ${this.target.where}: connection lost, reconnecting`);
        }
        this.timer = setTimeout(() => this.start(), this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, 10000);
    }

    onDisconnect() {
    }

    markReady() {
        this.ready = true;
        log(`${this.label} ${this.target.where}: connected`);
    }

    /* Writes a frame if connected; otherwise counts it as dropped. */
    send(frame) {
        if (!this.ready || !this.socket) {
            this.dropped++;
            return false;
        }
        this.socket.write(frame);
        return true;
    }

    stop(lastFrame) {
        this.stopped = true;
        clearTimeout(this.timer);
        if (!this.socket) {
            return;
        }
        if (this.ready && lastFrame) {
            this.socket.end(lastFrame);
        } else {
            this.socket.destroy();
        }
    }
}

/* MQTT "Remaining Length": 7 bits per byte, high bit = more bytes. */
function mqttVarint(n) {
    const bytes = [];
    do {
        let b = n % 128;
        n = Math.floor(n / 128);
        if (n > 0) {
            b |= 0x80;
        }
        bytes.push(b);
    } while (n > 0);
    return Buffer.from(bytes);
}

/* An MQTT UTF-8 string: two length bytes, then the bytes. */
function mqttString(text) {
    const body = Buffer.from(text, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(body.length);
    return Buffer.concat([len, body]);
}

function mqttPacket(firstByte, parts) {
    const body = Buffer.concat(parts);
    return Buffer.concat([Buffer.from([firstByte]), mqttVarint(body.length), body]);
}

const MQTT_KEEPALIVE_S = 30;

/* An MQTT 3.1.1 publisher (see the top of the file for what it covers). */
class MqttPublisher extends ReconnectingClient {
    constructor(url, clientId) {
        super('mqtt', parseBrokerUrl(url, 1883));
        this.clientId = clientId;
        this.inbox = Buffer.alloc(0);
        this.nextPacketId = 1;
        this.pingTimer = null;
    }

    onConnect(socket) {
        const t = this.target;
        let flags = 0x02; /* clean session: a publisher keeps no state */
        const payload = [mqttString(this.clientId)];
        if (t.username) {
            flags |= 0x80;
            payload.push(mqttString(t.username));
        }
        if (t.password) {
            flags |= 0x40;
            payload.push(mqttString(t.password));
        }
        const header = Buffer.concat([
            mqttString('MQTT'),
            Buffer.from([4, flags, MQTT_KEEPALIVE_S >> 8, MQTT_KEEPALIVE_S & 0xff]),
        ]);
        this.inbox = Buffer.alloc(0);
        socket.write(mqttPacket(0x10, [header, ...payload]));
    }

    /* Splits the byte stream into packets and handles the few a
     * publisher receives: CONNACK, PUBACK, PINGRESP. */
    onData(chunk) {
        this.inbox = Buffer.concat([this.inbox, chunk]);
        for (;;) {
            let len = 0;
            let mult = 1;
            let i = 1;
            for (; i < this.inbox.length && i <= 4; i++) {
                len += (this.inbox[i] & 0x7f) * mult;
                mult *= 128;
                if ((this.inbox[i] & 0x80) === 0) {
                    break;
                }
            }
            if (i >= this.inbox.length || this.inbox.length < i + 1 + len) {
                return;
            }
            const type = this.inbox[0] >> 4;
            const body = this.inbox.subarray(i + 1, i + 1 + len);
            this.inbox = this.inbox.subarray(i + 1 + len);
            if (type === 2) {
                this.onConnack(body);
            }
        }
    }

    onConnack(body) {
        if (body.length < 2 || body[1] !== 0) {
            log(`mqtt ${this.target.where}: connection refused (code ${body[1]})`);
            this.socket.destroy();
            return;
        }
        this.markReady();
        this.pingTimer = setInterval(() => {
            this.send(Buffer.from([0xc0, 0x00]));
        }, (MQTT_KEEPALIVE_S / 2) * 1000);
    }

    onDisconnect() {
        clearInterval(this.pingTimer);
        this.pingTimer = null;
    }

    /* PUBLISH with QoS 0 or 1. PUBACKs are not tracked: a reading lost
     * on a dropped connection is replaced by the next one anyway. */
    publish(topic, payload, qos, retain) {
        const parts = [mqttString(topic)];
        if (qos > 0) {
            const id = Buffer.alloc(2);
            id.writeUInt16BE(this.nextPacketId);
            this.nextPacketId = (this.nextPacketId % 65535) + 1;
            parts.push(id);
        }
        parts.push(Buffer.from(payload, 'utf8'));
        const first = 0x30 | (qos << 1) | (retain ? 1 : 0);
        return this.send(mqttPacket(first, parts));
    }

    stop() {
        this.onDisconnect();
        super.stop(Buffer.from([0xe0, 0x00]));
    }
}

/* A RESP array of bulk strings: one Redis command. */
function respCommand(args) {
    const parts = [`*${args.length}\r\n`];
    for (const arg of args) {
        parts.push(`$${Buffer.byteLength(arg)}\r\n${arg}\r\n`);
    }
    return Buffer.from(parts.join(''), 'utf8');
}

/* A Redis client that only writes commands and reports error replies.
 * Replies to PUBLISH (":<receivers>") and AUTH ("+OK") need no parsing:
 * the only thing worth knowing is a "-ERR" line. */
class RedisPublisher extends ReconnectingClient {
    constructor(url) {
        super('redis', parseBrokerUrl(url, 6379));
        this.partial = '';
    }

    onConnect(socket) {
        const t = this.target;
        this.partial = '';
        if (t.password) {
            const args = t.username ? ['AUTH', t.username, t.password] : ['AUTH', t.password];
            socket.write(respCommand(args));
        }
        this.markReady();
    }

    onData(chunk) {
        const lines = (this.partial + chunk.toString('utf8')).split('\r\n');
        this.partial = lines.pop();
        for (const line of lines) {
            if (line.startsWith('-')) {
                log(`redis ${this.target.where}: ${line.slice(1)}`);
            }
        }
    }

    publish(channel, message) {
        return this.send(respCommand(['PUBLISH', channel, message]));
    }

    stop() {
        super.stop(respCommand(['QUIT']));
    }
}

/* One step of a mean-reverting random walk, rounded to `digits`. */
function drift(current, target, spread, digits) {
    const noise = (Math.random() + Math.random() + Math.random() - 1.5) * spread;
    const next = current + (target - current) * 0.08 + noise;
    return Number(next.toFixed(digits));
}

/* The factory: every tick publishes one reading, round-robin over all
 * sensors and both measurements, so each topic updates at the same pace. */
function makePlant(mqtt) {
    const state = SENSORS.map((s) => ({ ...s, t: s.temperature, p: s.pressure }));
    let turn = 0;
    return function tick() {
        const sensor = state[Math.floor(turn / 2) % state.length];
        const isTemperature = turn % 2 === 0;
        turn++;
        const base = `factory/${sensor.line}/${sensor.name}`;
        if (isTemperature) {
            /* now and then a machine runs hot for a while */
            const hot = Math.random() < 0.02 ? 12 : 0;
            sensor.t = drift(sensor.t + hot, sensor.temperature, 0.9, 1);
            const body = JSON.stringify({ value: sensor.t, unit: 'C' });
            mqtt.publish(`${base}/temperature`, body, 1, true);
        } else {
            sensor.p = drift(sensor.p, sensor.pressure, 0.08, 2);
            const body = JSON.stringify({ value: sensor.p, unit: 'bar' });
            mqtt.publish(`${base}/pressure`, body, 1, true);
        }
    };
}

function pick(list) {
    return list[Math.floor(Math.random() * list.length)];
}

/* The shop: one order every 1-2 s to orders:<region>. Returns a function
 * that cancels the pending order. */
function startShop(redis) {
    let seq = 10000 + Math.floor(Math.random() * 80000);
    let timer = null;
    function next() {
        const product = pick(ITEMS);
        const qty = 1 + Math.floor(Math.random() * 12);
        const order = {
            id: `A-${seq++}`,
            region: pick(REGIONS),
            item: product.item,
            qty,
            total: Number((product.price * qty).toFixed(2)),
        };
        redis.publish(`orders:${order.region}`, JSON.stringify(order));
        timer = setTimeout(next, 1000 + Math.random() * 1000);
    }
    timer = setTimeout(next, 500);
    return () => clearTimeout(timer);
}

function main() {
    const mqtt = new MqttPublisher(MQTT_URL, `sluice-demo-publisher-${process.pid}`);
    const redis = new RedisPublisher(REDIS_URL);
    mqtt.start();
    redis.start();

    const tick = makePlant(mqtt);
    const interval = Math.max(10, Math.round(1000 / READINGS_PER_SECOND));
    const plantTimer = setInterval(tick, interval);
    const stopShop = startShop(redis);
    log(`${SENSORS.length * 2} MQTT topics at ${READINGS_PER_SECOND} readings/s, ` +
        `orders for ${REGIONS.join(', ')} every 1-2 s`);

    function shutdown() {
        clearInterval(plantTimer);
        stopShop();
        mqtt.stop();
        redis.stop();
        /* let the DISCONNECT/QUIT frames go out, then leave */
        setTimeout(() => process.exit(0), 200).unref();
    }
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
}

main();
