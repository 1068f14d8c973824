'use strict';
/*
 * sse.js - a raw Server-Sent Events client with the exact wire view, and
 * a plain HTTP request helper.
 *
 * Unlike a browser's EventSource, openSse() shows everything the server
 * sent: status, headers, and every frame (a block of lines ended by a
 * blank line) parsed per the WHATWG SSE rules: lines end with CRLF, CR
 * or LF; "field: value" with one leading space stripped; a line without
 * a colon is a field with an empty value; "data" lines joined with "\n";
 * lines starting with ":" are comments, kept so heartbeats are visible.
 * A frame is {id, event, data, retry, comments, at, atNs}: id/event/retry are
 * null when absent, data is null when the frame had no data line (a
 * browser dispatches only frames with data), retry is a number, at is
 * Date.now() and atNs process.hrtime.bigint() when the frame completed.
 * Comments are also listed on client.comments as {text, at}, because a
 * heartbeat comment may not be followed by a blank line.
 *
 * It never reconnects: a test that wants a resume opens a new stream
 * with a Last-Event-ID header or ?lastEventId=.
 */
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const { once } = require('node:events');
const { DEFAULT_TIMEOUT_MS, withTimeout } = require('./procs');

/* Incremental SSE parser; calls onFrame(frame) and onComment(text). */
class SseParser {
    constructor(onFrame, onComment) {
        this.onFrame = onFrame;
        this.onComment = onComment;
        this.decoder = new TextDecoder('utf-8');
        this.pending = '';
        this.skipLF = false;   /* the last chunk ended with CR: a leading LF belongs to it */
        this.firstChunk = true;
        this.resetFrame();
    }

    resetFrame() {
        this.frame = { id: null, event: null, data: null, retry: null, comments: [], at: 0 };
        this.frameHasLines = false;
    }

    feed(chunk) {
        let text = this.decoder.decode(chunk, { stream: true });
        if (this.firstChunk && text.length > 0) {
            this.firstChunk = false;
            if (text.charCodeAt(0) === 0xfeff) {
                text = text.slice(1);
            }
        }
        if (this.skipLF && text.startsWith('\n')) {
            text = text.slice(1);
        }
        this.skipLF = false;
        this.pending += text;
        this.drainLines();
    }

    drainLines() {
        const re = /\r\n|\r|\n/g;
        let start = 0;
        let m;
        while ((m = re.exec(this.pending)) !== null) {
            if (m[0] === '\r' && m.index === this.pending.length - 1) {
                this.skipLF = true;
            }
            this.line(this.pending.slice(start, m.index));
            start = m.index + m[0].length;
        }
        this.pending = this.pending.slice(start);
    }

    line(text) {
        if (text === '') {
            if (this.frameHasLines) {
                this.frame.at = Date.now();
                /* CLOCK_MONOTONIC on Linux (libuv's uv_hrtime), in ns. */
                this.frame.atNs = process.hrtime.bigint();
                this.onFrame(this.frame);
            }
            this.resetFrame();
            return;
        }
        this.frameHasLines = true;
        if (text.startsWith(':')) {
            this.frame.comments.push(text.slice(1));
            this.onComment(text.slice(1));
            return;
        }
        const colon = text.indexOf(':');
        const field = colon < 0 ? text : text.slice(0, colon);
        let value = colon < 0 ? '' : text.slice(colon + 1);
        if (value.startsWith(' ')) {
            value = value.slice(1);
        }
        this.field(field, value);
    }

    field(name, value) {
        const f = this.frame;
        if (name === 'data') {
            f.data = f.data === null ? value : `${f.data}\n${value}`;
        } else if (name === 'id') {
            if (!value.includes('\0')) {
                f.id = value;
            }
        } else if (name === 'event') {
            f.event = value;
        } else if (name === 'retry') {
            if (/^[0-9]+$/.test(value)) {
                f.retry = Number(value);
            }
        }
    }
}

/* Short JSON of a frame list for failure messages. */
function describeFrames(frames, max = 20) {
    const shown = frames.slice(-max).map((f) => {
        const o = {};
        for (const k of ['id', 'event', 'data', 'retry']) {
            if (f[k] !== null) {
                o[k] = typeof f[k] === 'string' && f[k].length > 200 ? `${f[k].slice(0, 200)}...` : f[k];
            }
        }
        if (f.comments.length) {
            o.comments = f.comments;
        }
        return JSON.stringify(o);
    });
    const skipped = frames.length > max ? `(${frames.length - max} earlier frames) ` : '';
    return `${frames.length} frames: ${skipped}${shown.join(' ')}`;
}

/* One open SSE response. Create with openSse(). */
class SseClient {
    constructor(req, res) {
        this.req = req;
        this.res = res;
        this.status = res.statusCode;
        this.headers = res.headers;
        this.frames = [];
        this.comments = [];
        this.raw = '';
        this.ended = false;
        this.error = null;
        this.waiters = new Set();
        this.parser = new SseParser(
            (frame) => this.frames.push(frame),
            (text) => this.comments.push({ text, at: Date.now() }));
        res.on('data', (chunk) => {
            if (this.raw.length < 4 << 20) {
                this.raw += chunk.toString('latin1');
            }
            this.parser.feed(chunk);
            this.check();
        });
        const finish = (err) => {
            if (!this.ended) {
                this.ended = true;
                this.endedAt = Date.now();
                this.error = err || null;
                this.check();
            }
        };
        res.on('end', () => finish());
        res.on('close', () => finish());
        res.on('error', (err) => finish(err));
        this.endedPromise = new Promise((resolve) => {
            this.waiters.add({ done: () => this.ended, resolve, reject: () => {} });
        });
    }

    /* Frames a browser would dispatch (those with a data line). */
    get events() {
        return this.frames.filter((f) => f.data !== null);
    }

    check() {
        for (const w of this.waiters) {
            let result;
            try {
                result = w.done();
            } catch (err) {
                this.waiters.delete(w);
                w.reject(err);
                continue;
            }
            if (result) {
                this.waiters.delete(w);
                w.resolve(result);
            }
        }
    }

    /*
     * Resolves with the first value that done() returns truthy, checked
     * after every chunk received; rejects after timeoutMs, or when the
     * stream ends first (unless done() accepted the ended state).
     */
    waitUntil(done, what, timeoutMs = DEFAULT_TIMEOUT_MS) {
        return new Promise((resolve, reject) => {
            const fail = (reason) => reject(new Error(
                `${reason} waiting for ${what}; got ${describeFrames(this.frames)}`));
            const timer = setTimeout(() => {
                this.waiters.delete(waiter);
                fail(`timed out after ${timeoutMs} ms`);
            }, timeoutMs);
            const waiter = {
                done: () => {
                    const value = done();
                    if (!value && this.ended) {
                        throw new Error('stream ended');
                    }
                    return value;
                },
                resolve: (v) => { clearTimeout(timer); resolve(v); },
                reject: (err) => { clearTimeout(timer); fail(err.message); },
            };
            this.waiters.add(waiter);
            this.check();
        });
    }

    /* Resolves with the first n dispatchable events. */
    waitForEvents(n, timeoutMs = DEFAULT_TIMEOUT_MS) {
        return this.waitUntil(() => {
            const ev = this.events;
            return ev.length >= n ? ev.slice(0, n) : null;
        }, `${n} events`, timeoutMs);
    }

    /* Resolves with the first frame (from index `from`) matching pred. */
    waitForFrame(pred, what, timeoutMs = DEFAULT_TIMEOUT_MS, from = 0) {
        return this.waitUntil(() => this.frames.slice(from).find(pred), what, timeoutMs);
    }

    /* Resolves when the server ends the response. */
    waitForEnd(timeoutMs = DEFAULT_TIMEOUT_MS) {
        return withTimeout(this.endedPromise, 'the stream to end', timeoutMs);
    }

    describe() {
        return describeFrames(this.frames);
    }

    close() {
        this.req.destroy();
        this.res.destroy();
    }
}

/* opts.tls: https (any certificate: tests make their own), else http. */
function transport(opts) {
    return opts.tls ? https : http;
}

/*
 * Opens GET (or opts.method) http://127.0.0.1:port + path (https with
 * opts.tls), with the path
 * sent exactly as given (no normalisation). Resolves with an SseClient
 * once the response headers arrived, whatever the status; the body is
 * in client.raw.
 */
function openSse(port, path, opts = {}) {
    return withTimeout(new Promise((resolve, reject) => {
        const req = transport(opts).request({
            host: '127.0.0.1',
            port,
            path,
            method: opts.method || 'GET',
            headers: { Accept: 'text/event-stream', ...(opts.headers || {}) },
            agent: false,
            rejectUnauthorized: false,
        });
        req.on('response', (res) => resolve(new SseClient(req, res)));
        req.on('error', reject);
        req.end();
    }), `response headers for ${opts.method || 'GET'} ${path}`, opts.timeoutMs || DEFAULT_TIMEOUT_MS);
}

/*
 * A plain request; resolves with {status, headers, body} (body as a
 * utf-8 string) once the response ended. opts: {method, headers, body,
 * tls}.
 */
function httpRequest(port, path, opts = {}) {
    return withTimeout(new Promise((resolve, reject) => {
        const req = transport(opts).request({
            host: '127.0.0.1', port, path, method: opts.method || 'GET',
            headers: opts.headers || {}, agent: false, rejectUnauthorized: false,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({
                status: res.statusCode,
                headers: res.headers,
                body: Buffer.concat(chunks).toString('utf8'),
            }));
            res.on('error', reject);
        });
        req.on('error', reject);
        req.end(opts.body);
    }), `response to ${opts.method || 'GET'} ${path}`, opts.timeoutMs || DEFAULT_TIMEOUT_MS);
}

/* Writes a raw HTTP request over net; resolves with {sock, state}, where
 * state.text collects everything received (latin1) and state.ended turns
 * true when the connection ends. Reading can be paused (sock.pause()). */
async function rawRequest(port, request) {
    const sock = net.connect(port, '127.0.0.1');
    const state = { text: '', ended: false };
    sock.on('data', (d) => { state.text += d.toString('latin1'); });
    sock.on('end', () => { state.ended = true; });
    sock.on('close', () => { state.ended = true; });
    sock.on('error', () => { state.ended = true; });
    await once(sock, 'connect');
    sock.write(request);
    return { sock, state };
}

module.exports = { SseParser, describeFrames, httpRequest, openSse, rawRequest };
