'use strict';
/*
 * cors.test.js - cross-origin access end to end (SPEC 3 "cors", SPEC 4):
 * Access-Control-Allow-Origin for configured origins only (the origin
 * itself, or "*" for a "*" config), Access-Control-Allow-Credentials
 * only when auth.cookie is configured, Vary: Origin whenever cors is
 * configured, OPTIONS preflight on route paths (204 with methods,
 * headers and max-age, no token needed) and 404 elsewhere, no
 * Access-Control-* header at all for other origins or without a cors
 * block, and "*" refused together with a cookie.
 *
 * Four sluices share one redis-server: "cookie" (two exact origins, auth
 * with a static token and a cookie), "plain" (one exact origin, no
 * auth), "star" (origins ["*"]) and "none" (no cors block).
 */
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { after, before, describe, test } = require('node:test');
const { redisConfig, uniquePayload } = require('./lib/fixtures');
const { connectRedis, startRedis } = require('./lib/redis');
const { runSluice, startSluice, withLog, writeConfig } = require('./lib/sluice');
const { httpRequest, openSse } = require('./lib/sse');

const DASH = 'https://dash.example.com';
const LOCAL = 'http://localhost:3000';
const TOKEN = `cors-${crypto.randomBytes(12).toString('hex')}`;
/* Origins that must not match DASH: other scheme, port, host, case,
 * prefix/suffix tricks, the opaque "null" origin. */
const OTHER_ORIGINS = [
    'https://evil.example',
    'http://dash.example.com',
    'https://dash.example.com:8443',
    'https://dash.example.com.evil.example',
    'https://xdash.example.com',
    'https://DASH.example.com',
    `${DASH}/`,
    'null',
];

const ctx = { redis: null, pub: null, cookie: null, plain: null, star: null, none: null };
let current = null; /* the sluice a failing test's log tail comes from */
const it = (name, fn) => test(name, withLog(() => current, fn));

const PUBLIC_ROUTE = ['  - path: /public/news', '    topics: ["cache:news"]', '    public: true'];

function config(extra) {
    return `${redisConfig(ctx.redis.port, { extraRoutes: PUBLIC_ROUTE })}${extra}`;
}

/* Access-Control-* header names of a response. */
function acHeaders(headers) {
    return Object.keys(headers).filter((h) => h.startsWith('access-control-'));
}

/* The comma-separated tokens of a header, lower-cased. */
function tokensOf(value) {
    return String(value || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

function assertVaryOrigin(headers, what) {
    assert.ok(tokensOf(headers.vary).includes('origin'), `${what}: Vary ${JSON.stringify(headers.vary)}`);
}

function assertNoCors(headers, what) {
    assert.deepEqual(acHeaders(headers), [], `${what}: Access-Control-* headers ${JSON.stringify(headers)}`);
}

/* ACAO equal to allowOrigin, ACAC "true" exactly when credentials. */
function assertCors(headers, what, allowOrigin, credentials) {
    assert.equal(headers['access-control-allow-origin'], allowOrigin, `${what}: Access-Control-Allow-Origin`);
    if (credentials) {
        assert.equal(headers['access-control-allow-credentials'], 'true', `${what}: Access-Control-Allow-Credentials`);
    } else {
        assert.equal(headers['access-control-allow-credentials'], undefined,
            `${what}: no Access-Control-Allow-Credentials without a cookie`);
    }
    assertVaryOrigin(headers, what);
}

/* Opens p with headers, expects a 200 stream and a live event on
 * channel; returns the response headers. */
async function streamHeaders(s, p, channel, headers) {
    const c = await openSse(s.port, p, { headers });
    try {
        assert.equal(c.status, 200, `GET ${p}: ${c.raw.slice(0, 200)}`);
        assert.match(c.headers['content-type'] || '', /^text\/event-stream/);
        await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
        const payload = uniquePayload();
        await ctx.pub.publish(channel, payload);
        const [ev] = await c.waitForEvents(1);
        assert.deepEqual(JSON.parse(ev.data).payload, JSON.parse(payload));
        return c.headers;
    } finally {
        c.close();
    }
}

function preflight(s, p, origin, extra = {}) {
    return httpRequest(s.port, p, {
        method: 'OPTIONS',
        headers: {
            Origin: origin,
            'Access-Control-Request-Method': 'GET',
            'Access-Control-Request-Headers': 'authorization, last-event-id',
            ...extra,
        },
    });
}

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    ctx.cookie = await startSluice(config(`auth:
  tokens:
    - name: dash
      token: ${TOKEN}
  cookie: sluice_token
cors:
  origins: ["${DASH}", "${LOCAL}"]
`));
    ctx.plain = await startSluice(config(`cors:\n  origins: ["${DASH}"]\n`));
    ctx.star = await startSluice(config('cors:\n  origins: ["*"]\n'));
    ctx.none = await startSluice(config(''));
    current = ctx.cookie;
});

after(async () => {
    if (ctx.pub) {
        ctx.pub.close();
    }
    for (const key of ['cookie', 'plain', 'star', 'none']) {
        if (ctx[key]) {
            await ctx[key].stop();
        }
    }
    if (ctx.redis) {
        await ctx.redis.stop();
    }
});

describe('exact origins with a cookie (credentials)', () => {
    const cookie = { Cookie: `sluice_token=${TOKEN}` };

    it('an allowed origin on a stream: ACAO is the origin, credentials true, Vary: Origin', async () => {
        current = ctx.cookie;
        for (const origin of [DASH, LOCAL]) {
            const h = await streamHeaders(ctx.cookie, '/orders/eu', 'orders:eu', { Origin: origin, ...cookie });
            assertCors(h, `stream from ${origin}`, origin, true);
        }
    });

    it('an allowed origin on /healthz', async () => {
        current = ctx.cookie;
        const res = await httpRequest(ctx.cookie.port, '/healthz', { headers: { Origin: DASH } });
        assert.equal(res.status, 200);
        assert.equal(res.body.trim(), 'ok');
        assertCors(res.headers, '/healthz', DASH, true);
    });

    it('an allowed origin on a 401: the page can see it must log in', async () => {
        current = ctx.cookie;
        const res = await httpRequest(ctx.cookie.port, '/orders/eu', { headers: { Origin: DASH } });
        assert.equal(res.status, 401);
        assertCors(res.headers, '401', DASH, true);
    });

    it('other origins get no Access-Control-* header, on streams and /healthz', async () => {
        current = ctx.cookie;
        for (const origin of OTHER_ORIGINS) {
            const res = await httpRequest(ctx.cookie.port, '/healthz', { headers: { Origin: origin } });
            assert.equal(res.status, 200, origin);
            assertNoCors(res.headers, `/healthz from ${origin}`);
            assertVaryOrigin(res.headers, `/healthz from ${origin}`);
        }
        const h = await streamHeaders(ctx.cookie, '/orders/eu', 'orders:eu', { Origin: 'https://evil.example', ...cookie });
        assertNoCors(h, 'stream from https://evil.example');
        assertVaryOrigin(h, 'stream from https://evil.example');
    });

    it('Vary: Origin also without an Origin header, on every kind of response', async () => {
        current = ctx.cookie;
        for (const [p, status] of [['/healthz', 200], ['/nope', 404], ['/orders/eu', 401]]) {
            const res = await httpRequest(ctx.cookie.port, p);
            assert.equal(res.status, status, p);
            assertVaryOrigin(res.headers, p);
            assertNoCors(res.headers, `${p} without Origin`);
        }
        const h = await streamHeaders(ctx.cookie, '/orders/eu', 'orders:eu', cookie);
        assertVaryOrigin(h, 'stream without Origin');
    });

    it('preflight on a route path: 204 with methods, headers and max-age, no token needed', async () => {
        current = ctx.cookie;
        for (const p of ['/orders/eu', '/all', '/public/news']) {
            const res = await preflight(ctx.cookie, p, DASH);
            assert.equal(res.status, 204, `OPTIONS ${p}: ${res.body}`);
            assert.equal(res.body, '', `OPTIONS ${p}: empty body`);
            assertCors(res.headers, `OPTIONS ${p}`, DASH, true);
            const methods = tokensOf(res.headers['access-control-allow-methods']);
            assert.ok(methods.includes('get'), `Access-Control-Allow-Methods ${res.headers['access-control-allow-methods']}`);
            const allowed = tokensOf(res.headers['access-control-allow-headers']);
            for (const h of ['authorization', 'last-event-id']) {
                assert.ok(allowed.includes(h), `Access-Control-Allow-Headers ${res.headers['access-control-allow-headers']} lacks ${h}`);
            }
            const maxAge = res.headers['access-control-max-age'];
            assert.match(maxAge || '', /^[1-9][0-9]*$/, `Access-Control-Max-Age ${maxAge}`);
            assert.equal(res.headers['referrer-policy'], 'no-referrer');
        }
    });

    it('OPTIONS on an unknown path: 404', async () => {
        current = ctx.cookie;
        for (const p of ['/nope', '/orders', '/orders/eu/extra']) {
            const res = await preflight(ctx.cookie, p, DASH);
            assert.equal(res.status, 404, `OPTIONS ${p}`);
        }
    });

    it('preflight from another origin: no Access-Control-* header', async () => {
        current = ctx.cookie;
        for (const origin of ['https://evil.example', 'null']) {
            const res = await preflight(ctx.cookie, '/orders/eu', origin);
            assert.ok([204, 403].includes(res.status), `OPTIONS from ${origin}: status ${res.status}`);
            assertNoCors(res.headers, `OPTIONS /orders/eu from ${origin}`);
        }
    });

    it('"*" together with auth.cookie is a config error', async () => {
        const file = writeConfig(`listen: 127.0.0.1:18081
${config(`auth:
  tokens:
    - name: dash
      token: ${TOKEN}
  cookie: sluice_token
cors:
  origins: ["*"]
`)}`);
        const res = await runSluice(['--check', '-c', file]);
        assert.equal(res.code, 1, `--check exit code; stderr ${res.stderr}`);
        assert.match(res.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: .*origins`, 'm'));
        assert.ok(!res.stderr.includes(TOKEN), '--check does not print the token');
    });
});

describe('exact origin without a cookie', () => {
    it('ACAO is the origin, no credentials header, Vary: Origin', async () => {
        current = ctx.plain;
        const h = await streamHeaders(ctx.plain, '/orders/eu', 'orders:eu', { Origin: DASH });
        assertCors(h, 'stream', DASH, false);
        const res = await httpRequest(ctx.plain.port, '/healthz', { headers: { Origin: DASH } });
        assertCors(res.headers, '/healthz', DASH, false);
        const pre = await preflight(ctx.plain, '/orders/eu', DASH);
        assert.equal(pre.status, 204);
        assertCors(pre.headers, 'OPTIONS', DASH, false);
    });

    it('other origins: no Access-Control-* header', async () => {
        current = ctx.plain;
        const h = await streamHeaders(ctx.plain, '/orders/eu', 'orders:eu', { Origin: LOCAL });
        assertNoCors(h, `stream from ${LOCAL}`);
        assertVaryOrigin(h, `stream from ${LOCAL}`);
    });
});

describe('origins: ["*"]', () => {
    it('any origin gets ACAO "*", without credentials', async () => {
        current = ctx.star;
        for (const origin of [DASH, 'https://anything.example', 'null']) {
            const h = await streamHeaders(ctx.star, '/orders/eu', 'orders:eu', { Origin: origin });
            assertCors(h, `stream from ${origin}`, '*', false);
        }
        const res = await httpRequest(ctx.star.port, '/healthz', { headers: { Origin: LOCAL } });
        assertCors(res.headers, '/healthz', '*', false);
    });

    it('preflight: 204 with ACAO "*"', async () => {
        current = ctx.star;
        const res = await preflight(ctx.star, '/all', 'https://anything.example');
        assert.equal(res.status, 204);
        assertCors(res.headers, 'OPTIONS /all', '*', false);
        assert.match(res.headers['access-control-max-age'] || '', /^[1-9][0-9]*$/);
    });
});

describe('no cors block', () => {
    it('an Origin gets no Access-Control-* header', async () => {
        current = ctx.none;
        const h = await streamHeaders(ctx.none, '/orders/eu', 'orders:eu', { Origin: DASH });
        assertNoCors(h, 'stream');
        const res = await httpRequest(ctx.none.port, '/healthz', { headers: { Origin: DASH } });
        assertNoCors(res.headers, '/healthz');
    });

    it('a preflight gets no Access-Control-* header', async () => {
        current = ctx.none;
        const res = await preflight(ctx.none, '/orders/eu', DASH);
        assert.ok([204, 403].includes(res.status), `status ${res.status}`);
        assertNoCors(res.headers, 'OPTIONS /orders/eu');
    });
});
