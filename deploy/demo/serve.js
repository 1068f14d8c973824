'use strict';
/*
 * deploy/demo/serve.js - a tiny static file server for the demo dashboard.
 *
 * Serves deploy/demo/dashboard/ and nothing else (GET and HEAD only), plus
 * one generated file, /config.js, which tells the page where sluice is:
 *
 *   window.SLUICE_CONFIG = {"url":"http://127.0.0.1:8080"};
 *
 * The page may also be given ?sluice=URL, which wins over config.js.
 *
 * Environment: PORT (default 8000), HOST (default 127.0.0.1), SLUICE_URL
 * (default: empty, the page then guesses http://<its host>:8080).
 *
 * Why not `python3 -m http.server` or `npx serve`: the demo needs the
 * generated config.js, and a server that cannot leave its folder (the
 * path is normalised, then both it and its real path, symlinks resolved,
 * must stay inside the dashboard folder).
 */
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = fs.realpathSync(path.join(__dirname, 'dashboard'));
const PORT = Number(process.env.PORT || 8000);
const HOST = process.env.HOST || '127.0.0.1';
const SLUICE_URL = process.env.SLUICE_URL || '';

const TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
    '.ico': 'image/x-icon',
    '.json': 'application/json',
};

/* Headers every answer carries. The page loads only its own files and
 * talks to sluice with EventSource, so the policy can be strict on
 * scripts while leaving connect-src open to wherever sluice runs. */
const COMMON_HEADERS = {
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': "default-src 'self'; connect-src 'self' http: https:; " +
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

function reply(res, status, text, extra) {
    res.writeHead(status, {
        ...COMMON_HEADERS,
        'Content-Type': 'text/plain; charset=utf-8',
        ...extra,
    });
    res.end(`${text}\n`);
}

/* Maps a URL path to a file inside ROOT, or returns null when the path is
 * malformed or would leave ROOT. */
function resolveInside(urlPath) {
    let decoded;
    try {
        decoded = decodeURIComponent(urlPath);
    } catch {
        return null;
    }
    if (decoded.includes('\0') || decoded.includes('\\')) {
        return null;
    }
    if (decoded.endsWith('/')) {
        decoded += 'index.html';
    }
    const file = path.join(ROOT, path.normalize(decoded));
    if (!file.startsWith(ROOT + path.sep)) {
        return null;
    }
    return file;
}

function sendConfig(req, res) {
    const body = `window.SLUICE_CONFIG = ${JSON.stringify({ url: SLUICE_URL })};\n`;
    res.writeHead(200, {
        ...COMMON_HEADERS,
        'Content-Type': TYPES['.js'],
        'Content-Length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
}

function sendFile(req, res, file) {
    fs.realpath(file, (err, real) => {
        if (err || !real.startsWith(ROOT + path.sep)) {
            reply(res, 404, 'not found');
            return;
        }
        fs.stat(real, (statErr, st) => {
            if (statErr || !st.isFile()) {
                reply(res, 404, 'not found');
                return;
            }
            res.writeHead(200, {
                ...COMMON_HEADERS,
                'Content-Type': TYPES[path.extname(real)] || 'application/octet-stream',
                'Content-Length': st.size,
            });
            if (req.method === 'HEAD') {
                res.end();
                return;
            }
            fs.createReadStream(real).on('error', () => res.destroy()).pipe(res);
        });
    });
}

function handle(req, res) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
        reply(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
        return;
    }
    let pathname;
    try {
        pathname = new URL(req.url, 'http://localhost').pathname;
    } catch {
        reply(res, 400, 'bad request');
        return;
    }
    if (pathname === '/config.js') {
        sendConfig(req, res);
        return;
    }
    const file = resolveInside(pathname);
    if (!file) {
        reply(res, 404, 'not found');
        return;
    }
    sendFile(req, res, file);
}

const server = http.createServer(handle);
server.on('error', (err) => {
    process.stderr.write(`serve: ${err.message}\n`);
    process.exit(1);
});
server.listen(PORT, HOST, () => {
    const { address, port } = server.address();
    const shown = address.includes(':') ? `[${address}]` : address;
    process.stderr.write(`serve: dashboard on http://${shown}:${port}/\n`);
});

function shutdown() {
    server.close(() => process.exit(0));
    server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
