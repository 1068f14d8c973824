'use strict';
/*
 * sluice.js - runs the real sluice binary for a test.
 *
 * The binary is $SLUICE_BIN (CTest sets it), else ../../build/sluice
 * relative to tests/integration. startSluice() writes the YAML config to
 * a temp dir, prepends "listen: 127.0.0.1:PORT" on a free port, starts
 * `sluice -c FILE`, and waits until GET /healthz answers 200 "ok" (and
 * GET /readyz 200 unless told not to). Its stderr is kept on
 * handle.stderr for greps and failure messages; withLog() adds its tail
 * to a failing test's error.
 */
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { freePort, makeTempDir, spawnTracked, stopProcess, waitFor } = require('./procs');
const { httpRequest } = require('./sse');

function sluiceBin() {
    /* Absolute, so that a child started with another cwd finds it too. */
    return path.resolve(process.env.SLUICE_BIN || path.resolve(__dirname, '../../../build/sluice'));
}

/* Throws a clear error when the binary is missing. */
function requireBinary() {
    const bin = sluiceBin();
    if (!fs.existsSync(bin)) {
        throw new Error(`sluice binary not found at ${bin}: build it (cmake --build build) or set SLUICE_BIN`);
    }
    return bin;
}

/* Writes text to NAME in a fresh temp dir; returns the file's path. */
function writeConfig(text, name = 'sluice.yaml') {
    const file = path.join(makeTempDir('sluice-cfg-'), name);
    fs.writeFileSync(file, text);
    return file;
}

/*
 * Runs sluice to completion with args (e.g. ['--check', '-c', FILE]).
 * Resolves with {code, signal, stdout, stderr}; kills it after timeoutMs.
 */
function runSluice(args, timeoutMs = 5000, env = process.env) {
    const bin = requireBinary();
    return new Promise((resolve) => {
        execFile(bin, args, { timeout: timeoutMs, env }, (err, stdout, stderr) => {
            const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
            resolve({ code, signal: err ? err.signal : null, stdout, stderr });
        });
    });
}

async function isHealthy(port, tls = false) {
    const res = await httpRequest(port, '/healthz', { timeoutMs: 1000, tls });
    return res.status === 200 && res.body.trim() === 'ok';
}

async function isReady(port, tls = false) {
    const res = await httpRequest(port, '/readyz', { timeoutMs: 1000, tls });
    return res.status === 200;
}

/* A running sluice; see startSluice. */
class Sluice {
    constructor(configText, port, env, tls = false) {
        this.port = port;
        this.tls = tls;
        this.configText = configText;
        this.configFile = writeConfig(`listen: 127.0.0.1:${port}\n${configText}`);
        this.env = env;
        this.child = null;
        this.previousStderr = '';
    }

    /* stderr of this run and of earlier runs (restarts). */
    get stderr() {
        return this.previousStderr + (this.child ? this.child.stderrText : '');
    }

    async start({ ready = true } = {}) {
        const bin = requireBinary();
        this.child = spawnTracked(bin, ['-c', this.configFile], { env: this.env });
        const child = this.child;
        const alive = () => {
            if (child.exitCode !== null || child.signalCode !== null) {
                throw new Error(`sluice exited (${child.exitCode ?? child.signalCode})`);
            }
        };
        try {
            await waitFor(async () => { alive(); return isHealthy(this.port, this.tls); },
                `sluice /healthz on port ${this.port}`);
            if (ready) {
                await waitFor(async () => { alive(); return isReady(this.port, this.tls); },
                    `sluice /readyz 200 on port ${this.port}`);
            }
        } catch (err) {
            err.message += `\n--- sluice stderr ---\n${this.stderrTail()}`;
            throw err;
        }
        return this;
    }

    /* Stops it (SIGTERM, SIGKILL after 5 s); resolves with {code, signal}. */
    async stop(signal = 'SIGTERM') {
        if (!this.child) {
            return null;
        }
        const result = await stopProcess(this.child, signal);
        this.previousStderr += this.child.stderrText;
        this.child = null;
        return result;
    }

    async restart(opts) {
        await this.stop();
        return this.start(opts);
    }

    stderrTail(lines = 40) {
        return this.stderr.split('\n').slice(-lines - 1).join('\n');
    }

    url(p) {
        return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}${p}`;
    }
}

/*
 * Starts sluice with configText (YAML without "listen:"); opts: {port,
 * ready (default true): also wait for /readyz, env, tls: the config has
 * a tls block, so health checks go over https}. Resolves with a Sluice
 * handle once it serves.
 */
async function startSluice(configText, opts = {}) {
    const port = opts.port || await freePort();
    const s = new Sluice(configText, port, opts.env || process.env, opts.tls === true);
    return s.start({ ready: opts.ready !== false });
}

/*
 * Wraps a test function so that a failure carries the tail of sluice's
 * stderr. getSluice returns the current handle (it may be created in a
 * before() hook).
 */
function withLog(getSluice, fn) {
    return async (t) => {
        try {
            await fn(t);
        } catch (err) {
            const s = getSluice();
            if (s && err && typeof err === 'object') {
                const tail = `\n--- sluice stderr (tail) ---\n${s.stderrTail()}`;
                try {
                    err.message += tail;
                } catch {
                    /* read-only message: report it on the side */
                    tail.split('\n').forEach((line) => t.diagnostic(line));
                }
            }
            throw err;
        }
    };
}

module.exports = { Sluice, isReady, requireBinary, runSluice, sluiceBin, startSluice, withLog, writeConfig };
