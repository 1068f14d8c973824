'use strict';
/*
 * procs.js - child processes, ports, temp dirs and bounded waits for the
 * integration tests.
 *
 * Every process started through spawnTracked() is remembered and killed
 * (SIGKILL) when the test file's process exits, also on a failed
 * assertion, an uncaught error, SIGINT or SIGTERM (e.g. a CTest timeout),
 * or the death of the test runner that started this file, so no
 * redis-server, mosquitto or sluice outlives its test file. Temp
 * dirs made with makeTempDir() are removed at the same moment.
 */
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const DEFAULT_TIMEOUT_MS = 5000;
const children = new Set();
const tempDirs = new Set();

function killAllSync() {
    for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) {
            try { child.kill('SIGKILL'); } catch { /* already gone */ }
        }
    }
    children.clear();
    for (const dir of tempDirs) {
        fs.rmSync(dir, { recursive: true, force: true });
    }
    tempDirs.clear();
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        killAllSync();
        process.exit(128 + os.constants.signals[sig]);
    });
}

/* When the test runner that started this file dies (SIGTERM, SIGKILL),
 * this process is re-parented: stop the children instead of finishing
 * the file as an orphan. */
const parentPid = process.ppid;
setInterval(() => {
    if (process.ppid !== parentPid) {
        killAllSync();
        process.exit(1);
    }
}, 500).unref();

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/* A TCP port that was free a moment ago: listen on port 0, read, close. */
function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/* A new directory under the OS temp dir, removed when the file ends. */
function makeTempDir(prefix = 'sluice-it-') {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.add(dir);
    return dir;
}

/*
 * Spawns cmd with args; stdout and stderr are collected into
 * child.stdoutText and child.stderrText, and both interleaved into
 * child.output (capped at 1 MiB) so a test can print or grep them. The child
 * is killed when this process exits. child.exited resolves with
 * {code, signal} when it ends.
 */
function spawnTracked(cmd, args, options = {}) {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    child.output = '';
    child.stdoutText = '';
    child.stderrText = '';
    const collect = (key) => (chunk) => {
        if (child.output.length < 1 << 20) {
            child.output += chunk.toString('utf8');
            child[key] += chunk.toString('utf8');
        }
    };
    child.stdout.on('data', collect('stdoutText'));
    child.stderr.on('data', collect('stderrText'));
    child.exited = new Promise((resolve) => {
        child.on('exit', (code, signal) => {
            children.delete(child);
            resolve({ code, signal });
        });
        child.on('error', (err) => {
            children.delete(child);
            child.output += `spawn error: ${err.message}\n`;
            resolve({ code: -1, signal: null, error: err });
        });
    });
    children.add(child);
    return child;
}

/* Sends signal (default SIGTERM) and waits for the exit; SIGKILL after
 * timeoutMs. Resolves with {code, signal}. */
async function stopProcess(child, signal = 'SIGTERM', timeoutMs = DEFAULT_TIMEOUT_MS) {
    if (child.exitCode !== null || child.signalCode !== null) {
        return { code: child.exitCode, signal: child.signalCode };
    }
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const result = await child.exited;
    clearTimeout(timer);
    return result;
}

/*
 * Polls fn (sync or async) every intervalMs until it returns a truthy
 * value, which is returned. Throws Error("timed out after N ms waiting
 * for WHAT") when timeoutMs passes; a throwing fn counts as falsy and
 * its last error is added to the message.
 */
async function waitFor(fn, what, timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 50) {
    const deadline = Date.now() + timeoutMs;
    let lastError = null;
    for (;;) {
        try {
            const value = await fn();
            if (value) {
                return value;
            }
        } catch (err) {
            lastError = err;
        }
        if (Date.now() >= deadline) {
            const detail = lastError ? ` (last error: ${lastError.message})` : '';
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
        }
        await sleep(intervalMs);
    }
}

/* Rejects with a clear message when promise does not settle in time. */
function withTimeout(promise, what, timeoutMs = DEFAULT_TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(
            () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
            timeoutMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

module.exports = {
    DEFAULT_TIMEOUT_MS,
    freePort,
    killAllSync,
    makeTempDir,
    sleep,
    spawnTracked,
    stopProcess,
    waitFor,
    withTimeout,
};
