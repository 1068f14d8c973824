'use strict';
/*
 * mosquitto.js - a real mosquitto broker for a test file, and publishing
 * through Debian's mosquitto_pub CLI.
 *
 * The broker gets a generated config in a temp dir (one loopback
 * listener, anonymous access, no persistence); readiness is a successful
 * mosquitto_pub to a throw-away topic.
 */
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { freePort, makeTempDir, spawnTracked, stopProcess, waitFor } = require('./procs');

/*
 * Publishes one message with mosquitto_pub. message is a string or a
 * Buffer (sent through stdin, so any bytes work). opts: {qos, retain,
 * protocol: 5|4}. Resolves when mosquitto_pub exits 0, rejects with its
 * stderr otherwise.
 */
function mqttPublish(port, topic, message, opts = {}) {
    const args = ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-q', String(opts.qos || 0)];
    if (opts.retain) {
        args.push('-r');
    }
    if (opts.protocol === 5) {
        args.push('-V', 'mqttv5');
    }
    args.push('-s'); /* message from stdin */
    return new Promise((resolve, reject) => {
        const child = execFile('mosquitto_pub', args, { timeout: 5000 }, (err, stdout, stderr) => {
            if (err) {
                reject(new Error(`mosquitto_pub ${topic} failed: ${err.message} ${stderr}`));
                return;
            }
            resolve();
        });
        child.stdin.end(Buffer.isBuffer(message) ? message : Buffer.from(String(message), 'utf8'));
    });
}

/*
 * Starts mosquitto on port (a free one when omitted) and waits until it
 * accepts a publish. opts.extraConf: more mosquitto.conf lines. Resolves
 * with {port, child, stop()}.
 */
async function startMosquitto(port, opts = {}) {
    const p = port || await freePort();
    const dir = makeTempDir('sluice-mosq-');
    const conf = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(conf, [
        `listener ${p} 127.0.0.1`,
        'allow_anonymous true',
        'persistence false',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        ...(opts.extraConf || []),
        '',
    ].join('\n'));
    const child = spawnTracked('mosquitto', ['-c', conf]);
    await waitFor(async () => {
        if (child.exitCode !== null) {
            throw new Error(`mosquitto exited: ${child.output}`);
        }
        await mqttPublish(p, 'sluice-test/ready', 'ping');
        return true;
    }, `mosquitto on port ${p}`, 5000, 100);
    return {
        port: p,
        child,
        stop: (signal = 'SIGKILL') => stopProcess(child, signal),
    };
}

module.exports = { mqttPublish, startMosquitto };
