'use strict';
/*
 * xread_server.js - the hand-built pattern sluice's per-key routes
 * replace, as apps write it: an HTTP handler that answers GET /chat/<id>
 * with SSE and, for each browser, loops on its own blocking
 *
 *   XREAD BLOCK 5000 STREAMS chat:<id> <last id>
 *
 * on a connection of its own (a blocking read holds its connection), then
 * writes each entry's field `t` as `data:` with the entry id as `id:`.
 * The peer of tests/bench/perkey.sh; not a product.
 *
 *   node xread_server.js HTTP_PORT REDIS_PORT
 */
const http = require('node:http');
const { connectRedis } = require('../../integration/lib/redis');

const [httpPort, redisPort] = process.argv.slice(2).map(Number);

async function serve(req, res) {
    const m = /^\/chat\/([A-Za-z0-9_-]+)$/.exec(req.url);
    if (!m) {
        res.writeHead(404).end();
        return;
    }
    const key = `chat:${m[1]}`;
    let last = req.headers['last-event-id'] || '0-0';
    let open = true;
    const conn = await connectRedis(redisPort);
    conn.timeoutMs = 3600 * 1000; /* a blocking read waits on purpose */
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' });
    res.write('retry: 2000\n\n');
    req.on('close', () => {
        open = false;
        conn.close();
    });
    while (open) {
        let reply;
        try {
            reply = await conn.command('XREAD', 'BLOCK', '5000', 'STREAMS', key, last);
        } catch (err) {
            break;
        }
        if (!reply) {
            continue;
        }
        let out = '';
        for (const [id, fields] of reply[0][1]) {
            const i = fields.indexOf('t');
            out += `id: ${id}\ndata: ${i >= 0 ? fields[i + 1] : ''}\n\n`;
            last = id;
        }
        res.write(out);
    }
}

http.createServer((req, res) => {
    serve(req, res).catch(() => res.destroy());
}).listen(httpPort, '127.0.0.1');
