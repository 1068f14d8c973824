'use strict';
/*
 * auth.test.js - tokens end to end (SPEC 3 "auth", SPEC 4): static
 * tokens with allow globs, HS256 JWTs (exp, nbf, iss, aud, leeway,
 * "{sub}" and the "sluice.allow" claim), the token sources and their
 * order (Authorization: Bearer, ?token=, cookie), public routes, 401 with
 * WWW-Authenticate / 403 with one-line bodies that never echo the token,
 * algorithm confusion (alg none, HS384, HS256 keyed with an RS256
 * server's public key), RS256 and ES256 configs, a stream closed at the
 * token's exp, and finally the stderr of every sluice started here,
 * which must not contain any secret or token.
 *
 * Accepted streams are proven live: an event published to redis after
 * the stream opened must arrive on it.
 */
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { redisConfig, uniquePayload } = require('./lib/fixtures');
const {
    decodeJwt, ecKeyPair, nowSeconds, rsaKeyPair, signJwt, unsignedJwt,
    withBadSignature, withPayload,
} = require('./lib/jwt');
const { makeTempDir } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { httpRequest, openSse } = require('./lib/sse');

const rand = () => crypto.randomBytes(12).toString('hex');
const JWT_SECRET = `it-jwt-secret-${rand()}`;
const TOKENS = {
    wallboard: `wb-${rand()}`,
    line: `line-${rand()}`,
    ops: `ops-${rand()}`,
};
const ISSUER = 'https://app.example';
const AUDIENCE = 'dashboards';

/* Every secret and token this file sends or configures; none may show
 * up in any sluice's stderr. */
const secrets = new Set([JWT_SECRET, ...Object.values(TOKENS)]);
/* Every sluice started here, for the final log check. */
const sluices = [];

const ctx = { redis: null, pub: null, sluice: null, rs: null, es: null };
let lastSluice = null; /* the one a failing test's log tail comes from */
const it = (name, fn) => test(name, withLog(() => lastSluice, fn));

/* Routes beside the fixture's: {site*} takes the rest of the path. */
const EXTRA_ROUTES = [
    '  - path: /sites/{site*}',
    '    topics: ["cache:sites:{site}"]',
    '  - path: /users/{user}/feed',
    '    topics: ["cache:users:{user}"]',
    '  - path: /admin/feed',
    '    topics: ["cache:admin"]',
    '  - path: /public/news',
    '    topics: ["cache:news"]',
    '    public: true',
];

/* Secrets reach the config through the environment, as in production. */
const ENV = {
    ...process.env,
    IT_JWT_SECRET: JWT_SECRET,
    IT_WALLBOARD_TOKEN: TOKENS.wallboard,
    IT_LINE_TOKEN: TOKENS.line,
    IT_OPS_TOKEN: TOKENS.ops,
};

function baseConfig() {
    return redisConfig(ctx.redis.port, { extraRoutes: EXTRA_ROUTES, logLevel: 'debug' });
}

/* The main config: static tokens, an HS256 JWT block and a cookie. */
function hsConfig() {
    return `${baseConfig()}auth:
  tokens:
    - name: wallboard
      token: \${IT_WALLBOARD_TOKEN}
      allow: ["/sites/*"]
    - name: line
      token: \${IT_LINE_TOKEN}
      allow: ["/sites/*/line1"]
    - name: ops
      token: \${IT_OPS_TOKEN}
  jwt:
    algorithm: HS256
    secret: \${IT_JWT_SECRET}
    issuer: ${ISSUER}
    audience: ${AUDIENCE}
    allow: ["/users/{sub}/*"]
  cookie: sluice_token
`;
}

/* A JWT-only config verifying alg with the public key in keyFile. */
function keyConfig(alg, keyFile) {
    return `${baseConfig()}auth:
  jwt:
    algorithm: ${alg}
    public_key_file: ${keyFile}
    issuer: ${ISSUER}
    audience: ${AUDIENCE}
    allow: ["/users/{sub}/*"]
`;
}

async function launch(configText) {
    const s = await startSluice(configText, { env: ENV });
    sluices.push(s);
    lastSluice = s;
    return s;
}

/* Remembers a minted token (and its signature, which is as secret). */
function track(token) {
    secrets.add(token);
    const sig = token.split('.')[2];
    if (sig && sig.length >= 16) {
        secrets.add(sig);
    }
    return token;
}

/* Standard claims for sub, valid for five minutes; extra overrides. */
function claims(sub, extra = {}) {
    const now = nowSeconds();
    return { sub, iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 300, ...extra };
}

/* An HS256 JWT for the main config. */
function hsJwt(payload, opts) {
    return track(signJwt('HS256', JWT_SECRET, payload, opts));
}

const bearer = (token) => ({ Authorization: `Bearer ${token}` });
const q = (token) => `token=${encodeURIComponent(token)}`;

/* The channel a path's events are published on (see EXTRA_ROUTES). */
function channelOf(p) {
    const m = /^\/(sites|users)\/([^?]+?)(?:\/feed)?(?:\?.*)?$/.exec(p);
    if (m) {
        return `${m[1]}:${m[2]}`;
    }
    if (p.startsWith('/admin/feed')) {
        return 'admin';
    }
    if (p.startsWith('/public/news')) {
        return 'news';
    }
    throw new Error(`no channel for ${p}`);
}

/* p without its token value, for failure messages. */
function redact(p) {
    return p.replace(/([?&]token=)[^&]*/, '$1...');
}

/* Cache-Control and Referrer-Policy, on every response (SPEC 4). */
function assertCommonHeaders(headers, what) {
    assert.equal(headers['cache-control'], 'no-store', `Cache-Control of ${what}`);
    assert.equal(headers['referrer-policy'], 'no-referrer', `Referrer-Policy of ${what}`);
}

/* True when data is a json envelope whose payload is the JSON text sent. */
function isPayload(data, sent) {
    try {
        return JSON.stringify(JSON.parse(data).payload) === sent;
    } catch {
        return false;
    }
}

/*
 * Opens p on sluice s with headers, expects a 200 event stream, publishes
 * a unique payload on the path's channel and expects it on the stream.
 * Returns the open client when keepOpen, else closes it.
 */
async function expectStream(s, p, headers = {}, { keepOpen = false } = {}) {
    const what = `GET ${redact(p)} ${JSON.stringify(Object.keys(headers))}`;
    const c = await openSse(s.port, p, { headers });
    try {
        assert.equal(c.status, 200, `${what}: status (body ${JSON.stringify(c.raw.slice(0, 200))})`);
        assert.match(c.headers['content-type'] || '', /^text\/event-stream/, what);
        assertCommonHeaders(c.headers, what);
        await c.waitForFrame((f) => f.retry !== null, `the retry frame of ${what}`);
        const payload = uniquePayload({ path: p });
        await ctx.pub.publish(channelOf(p), payload);
        const ev = await c.waitForFrame((f) => f.data !== null && isPayload(f.data, payload),
            `the published event on ${what}`);
        assert.deepEqual(JSON.parse(ev.data).payload, JSON.parse(payload));
    } catch (err) {
        c.close();
        throw err;
    }
    if (keepOpen) {
        return c;
    }
    c.close();
    return null;
}

/*
 * Requests p on sluice s and expects a refusal: status, for 401 a
 * "WWW-Authenticate: Bearer" challenge, a one-line text body (exactly
 * `body` when given) that contains none of the tokens in `sent`, and no
 * header echoing them either.
 */
async function expectRefused(s, p, { headers = {}, status, body, sent = [], method = 'GET' }) {
    const what = `${method} ${redact(p)} with ${JSON.stringify(Object.keys(headers))}`;
    const res = await httpRequest(s.port, p, { headers, method });
    assert.equal(res.status, status, `${what}: status (body ${JSON.stringify(res.body)})`);
    assertCommonHeaders(res.headers, what);
    if (status === 401) {
        assert.match(res.headers['www-authenticate'] || '', /^Bearer(\s|$)/,
            `${what}: WWW-Authenticate ${JSON.stringify(res.headers['www-authenticate'])}`);
    }
    assert.doesNotMatch(res.headers['content-type'] || '', /event-stream/, what);
    if (method !== 'HEAD') {
        const text = res.body.replace(/\r?\n$/, '');
        assert.ok(text.length > 0 && text.length <= 100, `${what}: short body ${JSON.stringify(res.body)}`);
        assert.ok(!/[\r\n]/.test(text), `${what}: one-line body ${JSON.stringify(res.body)}`);
        if (body !== undefined) {
            assert.equal(text, body, `${what}: body`);
        }
    }
    for (const token of sent) {
        for (const piece of [token, ...token.split('.').filter((x) => x.length >= 16)]) {
            assert.ok(!res.body.includes(piece), `${what}: the body echoes the token`);
            for (const [name, value] of Object.entries(res.headers)) {
                assert.ok(!String(value).includes(piece), `${what}: header ${name} echoes the token`);
            }
        }
    }
    return res;
}

/*
 * Sends HEAD p over a raw socket (node's client refuses a body after a
 * HEAD response, which would hide what came) and resolves with the
 * header block and whatever followed it, read until the server closes
 * or 1 s passed.
 */
function rawHead(port, p) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => {
            sock.write(`HEAD ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        });
        let data = '';
        const done = () => {
            clearTimeout(timer);
            sock.destroy();
            const end = data.indexOf('\r\n\r\n');
            if (end < 0) {
                reject(new Error(`no complete response to HEAD ${p}: ${JSON.stringify(data)}`));
                return;
            }
            resolve({ head: data.slice(0, end + 2), rest: data.slice(end + 4) });
        };
        const timer = setTimeout(done, 1000);
        sock.on('data', (chunk) => { data += chunk.toString('latin1'); });
        sock.on('end', done);
        sock.on('error', reject);
    });
}

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    ctx.sluice = await launch(hsConfig());
});

after(async () => {
    if (ctx.pub) {
        ctx.pub.close();
    }
    for (const s of sluices) {
        await s.stop();
    }
    if (ctx.redis) {
        await ctx.redis.stop();
    }
});

describe('static tokens', () => {
    it('no token: 401 "missing token" with WWW-Authenticate: Bearer', async () => {
        await expectRefused(ctx.sluice, '/sites/north', { status: 401, body: 'missing token' });
        await expectRefused(ctx.sluice, '/orders/eu', { status: 401, body: 'missing token' });
    });

    it('HEAD without a token: 401 with headers only', async () => {
        const res = await rawHead(ctx.sluice.port, '/sites/north');
        assert.match(res.head, /^HTTP\/1\.1 401 /, res.head);
        assert.match(res.head, /\r\nWWW-Authenticate: Bearer(\s|\r\n)/i, res.head);
        assert.equal(res.rest, '', `a HEAD response carries no body; got ${JSON.stringify(res.rest)} after the headers`);
    });

    it('a wrong static token: 401 "invalid token"', async () => {
        const wrong = `wb-${rand()}`;
        secrets.add(wrong);
        for (const headers of [bearer(wrong), bearer(`${TOKENS.wallboard}x`),
            bearer(TOKENS.wallboard.slice(0, -1)), bearer(TOKENS.wallboard.toUpperCase())]) {
            const sent = [headers.Authorization.slice(7)];
            await expectRefused(ctx.sluice, '/sites/north', { headers, status: 401, body: 'invalid token', sent });
        }
        await expectRefused(ctx.sluice, `/sites/north?${q(wrong)}`, { status: 401, body: 'invalid token', sent: [wrong] });
    });

    it('an allowed path opens a live stream', async () => {
        await expectStream(ctx.sluice, '/sites/north', bearer(TOKENS.wallboard));
        /* a final "/*" matches any rest */
        await expectStream(ctx.sluice, '/sites/north/line2', bearer(TOKENS.wallboard));
    });

    it('a path outside the allow globs: 403 "forbidden"', async () => {
        for (const p of ['/users/alice/feed', '/admin/feed', '/orders/eu']) {
            await expectRefused(ctx.sluice, p, {
                headers: bearer(TOKENS.wallboard), status: 403, body: 'forbidden', sent: [TOKENS.wallboard],
            });
        }
        await expectRefused(ctx.sluice, `/admin/feed?${q(TOKENS.wallboard)}`,
            { status: 403, body: 'forbidden', sent: [TOKENS.wallboard] });
    });

    it('"*" matches within one segment only', async () => {
        await expectStream(ctx.sluice, '/sites/south/line1', bearer(TOKENS.line));
        for (const p of ['/sites/south/line2', '/sites/south/x/line1', '/sites/south']) {
            await expectRefused(ctx.sluice, p, {
                headers: bearer(TOKENS.line), status: 403, body: 'forbidden', sent: [TOKENS.line],
            });
        }
    });

    it('a token without allow opens every path', async () => {
        for (const p of ['/sites/east', '/users/carol/feed', '/admin/feed']) {
            await expectStream(ctx.sluice, p, bearer(TOKENS.ops));
        }
    });

    it('HEAD with a valid token: 200 event-stream headers', async () => {
        const res = await httpRequest(ctx.sluice.port, '/sites/north', { method: 'HEAD', headers: bearer(TOKENS.wallboard) });
        assert.equal(res.status, 200);
        assert.match(res.headers['content-type'] || '', /^text\/event-stream/);
        assertCommonHeaders(res.headers, 'HEAD');
    });
});

describe('token sources', () => {
    it('Authorization: Bearer, with the scheme in any case', async () => {
        await expectStream(ctx.sluice, '/sites/a', { Authorization: `bearer ${TOKENS.wallboard}` });
        await expectStream(ctx.sluice, '/sites/a', { Authorization: `BEARER  ${TOKENS.wallboard}` });
    });

    it('another Authorization scheme or an empty bearer: 401', async () => {
        const basic = Buffer.from(`wallboard:${TOKENS.wallboard}`).toString('base64');
        secrets.add(basic);
        for (const value of [`Basic ${basic}`, `Token ${TOKENS.wallboard}`, 'Bearer', 'Bearer ',
            TOKENS.wallboard]) {
            await expectRefused(ctx.sluice, '/sites/a', {
                headers: { Authorization: value }, status: 401, sent: [TOKENS.wallboard, basic],
            });
        }
    });

    it('?token= query parameter', async () => {
        await expectStream(ctx.sluice, `/sites/b?${q(TOKENS.wallboard)}`);
        const jwt = hsJwt(claims('alice'));
        await expectStream(ctx.sluice, `/users/alice/feed?${q(jwt)}`);
    });

    it('the configured cookie, among others', async () => {
        await expectStream(ctx.sluice, '/sites/c', { Cookie: `sluice_token=${TOKENS.wallboard}` });
        await expectStream(ctx.sluice, '/sites/c',
            { Cookie: `theme=dark; sluice_token=${TOKENS.wallboard}; lang=en` });
        const jwt = hsJwt(claims('alice'));
        await expectStream(ctx.sluice, '/users/alice/feed', { Cookie: `a=1;sluice_token=${jwt}` });
    });

    it('a cookie of another name is no token: 401 "missing token"', async () => {
        for (const cookie of [`xsluice_token=${TOKENS.wallboard}`, `token=${TOKENS.wallboard}`,
            `sluice_token_x=${TOKENS.wallboard}`]) {
            await expectRefused(ctx.sluice, '/sites/c', {
                headers: { Cookie: cookie }, status: 401, body: 'missing token', sent: [TOKENS.wallboard],
            });
        }
    });

    it('the header wins over the query: valid header + bad query is accepted', async () => {
        await expectStream(ctx.sluice, `/sites/d?${q('bogus-query-token')}`, bearer(TOKENS.wallboard));
    });

    it('the header wins over the query: bad header + valid query is 401', async () => {
        await expectRefused(ctx.sluice, `/sites/d?${q(TOKENS.wallboard)}`, {
            headers: bearer('bogus-header-token'), status: 401, body: 'invalid token', sent: [TOKENS.wallboard],
        });
    });

    it('the query wins over the cookie', async () => {
        await expectStream(ctx.sluice, `/sites/e?${q(TOKENS.wallboard)}`, { Cookie: 'sluice_token=bogus-cookie' });
        await expectRefused(ctx.sluice, `/sites/e?${q('bogus-query-token')}`, {
            headers: { Cookie: `sluice_token=${TOKENS.wallboard}` }, status: 401, body: 'invalid token',
            sent: [TOKENS.wallboard],
        });
    });

    it('a public route needs no token', async () => {
        await expectStream(ctx.sluice, '/public/news');
    });
});

describe('HS256 JWT', () => {
    it('"{sub}" in jwt.allow: alice opens /users/alice/feed', async () => {
        await expectStream(ctx.sluice, '/users/alice/feed', bearer(hsJwt(claims('alice'))));
    });

    it('the same token on /users/bob/feed: 403', async () => {
        const jwt = hsJwt(claims('alice'));
        await expectRefused(ctx.sluice, '/users/bob/feed',
            { headers: bearer(jwt), status: 403, body: 'forbidden', sent: [jwt] });
        await expectRefused(ctx.sluice, '/admin/feed',
            { headers: bearer(jwt), status: 403, body: 'forbidden', sent: [jwt] });
    });

    it('an "aud" array holding the audience is accepted', async () => {
        const jwt = hsJwt(claims('alice', { aud: ['other', AUDIENCE] }));
        await expectStream(ctx.sluice, '/users/alice/feed', bearer(jwt));
    });

    it('the "sluice.allow" claim grants more paths, beside jwt.allow', async () => {
        const jwt = hsJwt(claims('alice', { sluice: { allow: ['/admin/*'] } }));
        await expectStream(ctx.sluice, '/admin/feed', bearer(jwt));
        await expectStream(ctx.sluice, '/users/alice/feed', bearer(jwt));
        await expectRefused(ctx.sluice, '/sites/north',
            { headers: bearer(jwt), status: 403, body: 'forbidden', sent: [jwt] });
    });

    it('a token without sub opens only what its claim allows', async () => {
        const jwt = hsJwt(claims(undefined, { sluice: { allow: ['/sites/*'] } }));
        assert.equal(decodeJwt(jwt).payload.sub, undefined);
        await expectStream(ctx.sluice, '/sites/w', bearer(jwt));
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(jwt), status: 403, body: 'forbidden', sent: [jwt] });
    });

    it('an expired token: 401 "token expired"', async () => {
        const now = nowSeconds();
        const jwt = hsJwt(claims('alice', { iat: now - 120, exp: now - 60 }));
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(jwt), status: 401, body: 'token expired', sent: [jwt] });
        await expectRefused(ctx.sluice, `/users/alice/feed?${q(jwt)}`,
            { status: 401, body: 'token expired', sent: [jwt] });
    });

    it('nbf in the future (beyond the leeway): 401', async () => {
        const jwt = hsJwt(claims('alice', { nbf: nowSeconds() + 60 }));
        await expectRefused(ctx.sluice, '/users/alice/feed', { headers: bearer(jwt), status: 401, sent: [jwt] });
    });

    it('nbf within the default 5 s leeway is accepted', async () => {
        const jwt = hsJwt(claims('alice', { nbf: nowSeconds() + 2 }));
        await expectStream(ctx.sluice, '/users/alice/feed', bearer(jwt));
    });

    it('a token without exp: 401 (exp is required)', async () => {
        const c = claims('alice');
        delete c.exp;
        const jwt = hsJwt(c);
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
    });

    it('a wrong or missing issuer: 401', async () => {
        const c = claims('alice');
        delete c.iss;
        for (const jwt of [hsJwt(claims('alice', { iss: 'https://evil.example' })), hsJwt(c)]) {
            await expectRefused(ctx.sluice, '/users/alice/feed',
                { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
        }
    });

    it('a wrong or missing audience: 401', async () => {
        const c = claims('alice');
        delete c.aud;
        for (const jwt of [hsJwt(claims('alice', { aud: 'other' })), hsJwt(claims('alice', { aud: ['x', 'y'] })),
            hsJwt(c)]) {
            await expectRefused(ctx.sluice, '/users/alice/feed',
                { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
        }
    });

    it('a tampered payload: 401', async () => {
        /* alice's signature on a payload that now says bob */
        const jwt = hsJwt(claims('alice'));
        const forged = track(withPayload(jwt, claims('bob')));
        await expectRefused(ctx.sluice, '/users/bob/feed',
            { headers: bearer(forged), status: 401, body: 'invalid token', sent: [forged] });
    });

    it('a tampered signature: 401', async () => {
        const forged = track(withBadSignature(hsJwt(claims('alice'))));
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(forged), status: 401, body: 'invalid token', sent: [forged] });
    });

    it('a token signed with another secret: 401', async () => {
        const jwt = track(signJwt('HS256', `${JWT_SECRET}-other`, claims('alice')));
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
    });

    it('"alg": "none": 401', async () => {
        const jwt = track(unsignedJwt(claims('alice')));
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
        /* the same with a signature segment left in place */
        const [h, p] = jwt.split('.');
        const none = track(`${h}.${p}.${hsJwt(claims('alice')).split('.')[2]}`);
        await expectRefused(ctx.sluice, '/users/alice/feed',
            { headers: bearer(none), status: 401, body: 'invalid token', sent: [none] });
    });

    it('another algorithm than the configured HS256: 401', async () => {
        const tokens = [
            track(signJwt('HS384', JWT_SECRET, claims('alice'))),
            track(signJwt('HS512', JWT_SECRET, claims('alice'))),
            /* HS256-signed, but the header names it in lower case */
            track(signJwt('HS256', JWT_SECRET, claims('alice'), { header: { alg: 'hs256' } })),
            track(signJwt('RS256', rsaKeyPair().privateKey, claims('alice'))),
        ];
        for (const jwt of tokens) {
            await expectRefused(ctx.sluice, '/users/alice/feed',
                { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
        }
    });

    it('garbage shaped like a token: 401', async () => {
        for (const junk of ['a.b.c', 'x'.repeat(9000), '...', 'eyJhbGciOiJIUzI1NiJ9.e30.%%%']) {
            await expectRefused(ctx.sluice, '/users/alice/feed',
                { headers: bearer(junk), status: 401, body: 'invalid token' });
        }
    });

    it('a stream opened with an expiring token closes at exp', async () => {
        const exp = nowSeconds() + 2;
        const jwt = hsJwt(claims('alice', { exp }));
        const c = await expectStream(ctx.sluice, '/users/alice/feed', bearer(jwt), { keepOpen: true });
        try {
            assert.ok(Date.now() < exp * 1000 - 100, 'the stream opened before exp');
            await c.waitForEnd(exp * 1000 - Date.now() + 3000);
            const endedAt = Date.now();
            const late = endedAt - exp * 1000;
            assert.ok(late >= -100 && late <= 1500,
                `stream ended ${late} ms after exp (want -100..1500); ${c.describe()}`);
        } finally {
            c.close();
        }
    });
});

describe('RS256 and ES256 configs', () => {
    const rsa = rsaKeyPair();
    const ec = ecKeyPair();

    before(async () => {
        const dir = makeTempDir('sluice-keys-');
        const rsFile = path.join(dir, 'rs256.pem');
        const esFile = path.join(dir, 'es256.pem');
        fs.writeFileSync(rsFile, rsa.publicPem);
        fs.writeFileSync(esFile, ec.publicPem);
        ctx.rs = await launch(keyConfig('RS256', rsFile));
        ctx.es = await launch(keyConfig('ES256', esFile));
    });

    it('RS256: a token signed with the private key opens a stream', async () => {
        lastSluice = ctx.rs;
        const jwt = track(signJwt('RS256', rsa.privateKey, claims('alice')));
        await expectStream(ctx.rs, '/users/alice/feed', bearer(jwt));
        await expectRefused(ctx.rs, '/users/bob/feed', { headers: bearer(jwt), status: 403, sent: [jwt] });
    });

    it('RS256: HS256 keyed with the public key PEM (key confusion): 401', async () => {
        lastSluice = ctx.rs;
        const pemText = rsa.publicPem;
        const tokens = [
            track(signJwt('HS256', pemText, claims('alice'))),
            track(signJwt('HS256', pemText.trim(), claims('alice'))),
            track(signJwt('HS256', pemText, claims('alice'), { header: { alg: 'RS256' } })),
        ];
        for (const jwt of tokens) {
            await expectRefused(ctx.rs, '/users/alice/feed',
                { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
        }
    });

    it('RS256: a token signed with another RSA key, or unsigned: 401', async () => {
        lastSluice = ctx.rs;
        const tokens = [
            track(signJwt('RS256', rsaKeyPair().privateKey, claims('alice'))),
            track(withBadSignature(signJwt('RS256', rsa.privateKey, claims('alice')))),
            track(unsignedJwt(claims('alice'))),
        ];
        for (const jwt of tokens) {
            await expectRefused(ctx.rs, '/users/alice/feed',
                { headers: bearer(jwt), status: 401, body: 'invalid token', sent: [jwt] });
        }
    });

    it('RS256: an expired token: 401 "token expired"', async () => {
        lastSluice = ctx.rs;
        const jwt = track(signJwt('RS256', rsa.privateKey, claims('alice', { exp: nowSeconds() - 60 })));
        await expectRefused(ctx.rs, '/users/alice/feed',
            { headers: bearer(jwt), status: 401, body: 'token expired', sent: [jwt] });
    });

    it('ES256: a token signed with the EC key opens a stream; others are 401', async () => {
        lastSluice = ctx.es;
        const jwt = track(signJwt('ES256', ec.privateKey, claims('alice')));
        await expectStream(ctx.es, '/users/alice/feed', bearer(jwt));
        const tokens = [
            track(signJwt('ES256', ecKeyPair().privateKey, claims('alice'))),
            track(signJwt('RS256', rsa.privateKey, claims('alice'))),
            track(signJwt('HS256', ec.publicPem, claims('alice'))),
        ];
        for (const bad of tokens) {
            await expectRefused(ctx.es, '/users/alice/feed',
                { headers: bearer(bad), status: 401, body: 'invalid token', sent: [bad] });
        }
    });
});

it('no sluice log line contains a secret or a token', async () => {
    lastSluice = ctx.sluice;
    assert.ok(sluices.length >= 3, `sluices started: ${sluices.length}`);
    for (const s of sluices) {
        await s.stop();
    }
    assert.ok(secrets.size >= 20, `secrets tracked: ${secrets.size}`);
    for (const [i, s] of sluices.entries()) {
        const log = s.stderr;
        assert.ok(log.length > 0, `sluice #${i} logged nothing at debug level`);
        for (const secret of secrets) {
            assert.ok(!log.includes(secret),
                `sluice #${i} stderr contains a secret (${secret.length} chars, starts ${secret.slice(0, 4)}...)`);
        }
    }
});
