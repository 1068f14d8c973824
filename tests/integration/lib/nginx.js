'use strict';
/*
 * nginx.js - a real round-robin reverse proxy (Debian's nginx) in front
 * of several sluice replicas, the way a load balancer or an Ingress
 * stands in front of them in production.
 *
 * nginx runs as a foreground child (daemon off, master_process off: one
 * process, so a kill stops all of it) with a generated config and its
 * own prefix in a temp dir. The upstream lists the replicas' ports in
 * order; nginx's default balancing is round robin. No upstream keepalive,
 * so every request (every EventSource reconnect) is balanced on its own.
 * Streams go through unbuffered (proxy_buffering off) and may stay quiet
 * for long (proxy_read_timeout 1h). A replica that refuses is skipped
 * for 1 s (max_fails=1 fail_timeout=1s) and the request tries the next
 * one (proxy_next_upstream's default: error and timeout).
 */
const fs = require('node:fs');
const path = require('node:path');
const { freePort, makeTempDir, spawnTracked, stopProcess, waitFor } = require('./procs');
const { httpRequest } = require('./sse');

const NGINX = process.env.NGINX || '/usr/sbin/nginx';

function nginxConfig(dir, port, upstreamPorts) {
    const servers = upstreamPorts
        .map((p) => `        server 127.0.0.1:${p} max_fails=1 fail_timeout=1s;`);
    /* As root nginx would hand the worker to nobody; master_process off
     * keeps one process that runs as the caller. */
    return [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `pid ${dir}/nginx.pid;`,
        `error_log ${dir}/error.log warn;`,
        'events { worker_connections 1024; }',
        'http {',
        `    access_log ${dir}/access.log;`,
        `    client_body_temp_path ${dir}/tmp/body;`,
        `    proxy_temp_path ${dir}/tmp/proxy;`,
        `    fastcgi_temp_path ${dir}/tmp/fastcgi;`,
        `    uwsgi_temp_path ${dir}/tmp/uwsgi;`,
        `    scgi_temp_path ${dir}/tmp/scgi;`,
        '    upstream sluice {',
        ...servers,
        '    }',
        '    server {',
        `        listen 127.0.0.1:${port};`,
        '        location / {',
        '            proxy_pass http://sluice;',
        '            proxy_http_version 1.1;',
        '            proxy_set_header Connection "";',
        '            proxy_buffering off;',
        '            proxy_cache off;',
        '            proxy_read_timeout 1h;',
        '            proxy_connect_timeout 2s;',
        '        }',
        '    }',
        '}',
        '',
    ].join('\n');
}

/*
 * Starts nginx on a free port proxying round robin to upstreamPorts
 * (127.0.0.1) and waits until it answers. Resolves with {port, child,
 * dir, stop(), url(p), errorLog()}.
 */
async function startNginx(upstreamPorts) {
    if (!fs.existsSync(NGINX)) {
        throw new Error(`nginx not found at ${NGINX} (apt-get install nginx-light, or set NGINX)`);
    }
    const port = await freePort();
    const dir = makeTempDir('sluice-nginx-');
    fs.mkdirSync(path.join(dir, 'tmp'));
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, nginxConfig(dir, port, upstreamPorts));
    const child = spawnTracked(NGINX, ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')]);
    const errorLog = () => {
        try {
            return fs.readFileSync(path.join(dir, 'error.log'), 'utf8');
        } catch {
            return '';
        }
    };
    await waitFor(async () => {
        if (child.exitCode !== null) {
            throw new Error(`nginx exited: ${child.output} ${errorLog()}`);
        }
        /* Any answer will do: the replicas may not be up yet. */
        await httpRequest(port, '/nginx-probe', { timeoutMs: 1000 });
        return true;
    }, `nginx on port ${port}`);
    return {
        port,
        child,
        dir,
        errorLog,
        url: (p) => `http://127.0.0.1:${port}${p}`,
        stop: () => stopProcess(child, 'SIGKILL'),
    };
}

module.exports = { startNginx };
