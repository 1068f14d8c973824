'use strict';
/*
 * auth_paths.test.js - auth and routing judge the same decoded path
 * (issue: a JWT whose sub is "%61lice" opened alice's stream, because
 * allow globs were matched against the raw path while the router decoded
 * it; and a "*" in an allow glob spanned "%2F").
 *
 * Each case is a real request to a real sluice (HEAD answers the status
 * with the headers only). Accepted cases are proven to be the stream the
 * router resolved: an event published on the decoded topic arrives.
 */
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { after, before, describe, test } = require('node:test');
const { nowSeconds, signJwt } = require('./lib/jwt');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { httpRequest, openSse } = require('./lib/sse');

const SECRET = `paths-secret-${crypto.randomBytes(8).toString('hex')}`;
const STATIC = `paths-static-${crypto.randomBytes(8).toString('hex')}`;
const ctx = { redis: null, pub: null, sluice: null };
const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

function config(redisPort) {
    return `sources:
  - name: cache
    type: redis
    url: redis://127.0.0.1:${redisPort}
routes:
  - path: /users/{user}/feed
    topics: ["cache:users:{user}"]
  - path: /sites/{site*}
    topics: ["cache:sites:{site}"]
auth:
  tokens:
    - name: north
      token: \${PATHS_STATIC}
      allow: ["/sites/north*"]
  jwt:
    algorithm: HS256
    secret: \${PATHS_SECRET}
    allow: ["/users/{sub}/*"]
stream: {retry: 1s, heartbeat: 15s}
`;
}

function jwtFor(sub) {
    return signJwt('HS256', SECRET, { sub, exp: nowSeconds() + 600 });
}

async function status(path, token) {
    const res = await httpRequest(ctx.sluice.port, path, {
        method: 'HEAD', headers: { Authorization: `Bearer ${token}` },
    });
    return res.status;
}

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    ctx.sluice = await startSluice(config(ctx.redis.port), {
        env: { ...process.env, PATHS_SECRET: SECRET, PATHS_STATIC: STATIC },
    });
});

after(async () => {
    if (ctx.sluice) await ctx.sluice.stop();
    if (ctx.pub) ctx.pub.close();
    if (ctx.redis) await ctx.redis.stop();
});

describe('{sub} matches one decoded segment literally', () => {
    it('a sub of "%61lice" cannot open alice\'s stream', async () => {
        assert.equal(await status('/users/%61lice/feed', jwtFor('%61lice')), 403);
        assert.equal(await status('/users/alice/feed', jwtFor('%61lice')), 403);
    });

    it('alice opens her stream however the path is escaped, and it is hers', async () => {
        const token = jwtFor('alice');
        assert.equal(await status('/users/alice/feed', token), 200);
        assert.equal(await status('/users/%61lice/feed', token), 200);
        const c = await openSse(ctx.sluice.port, '/users/%61lice/feed', {
            headers: { Authorization: `Bearer ${token}` },
        });
        try {
            const marker = `m-${crypto.randomBytes(6).toString('hex')}`;
            await ctx.pub.publish('users:alice', JSON.stringify({ marker }));
            const [ev] = await c.waitForEvents(1);
            assert.equal(JSON.parse(ev.data).topic, 'users:alice');
            assert.equal(JSON.parse(ev.data).payload.marker, marker);
        } finally {
            c.close();
        }
    });

    it('mallory cannot open alice\'s stream', async () => {
        assert.equal(await status('/users/alice/feed', jwtFor('mallory')), 403);
    });
});

describe('a "*" in an allow glob does not span an escaped "/"', () => {
    it('"/sites/north*" opens north and northeast, not north%2Fsouth', async () => {
        assert.equal(await status('/sites/north', STATIC), 200);
        assert.equal(await status('/sites/northeast', STATIC), 200);
        /* The router reads north%2Fsouth as the topic north/south, which
         * the same token may not open as /sites/north/south either. */
        assert.equal(await status('/sites/north/south', STATIC), 403);
        assert.equal(await status('/sites/north%2Fsouth', STATIC), 403);
        assert.equal(await status('/sites/north%2fsouth', STATIC), 403);
    });
});
