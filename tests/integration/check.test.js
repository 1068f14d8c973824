'use strict';
/*
 * check.test.js - the command line (SPEC 2, 3): --check prints the
 * resolved routes or FILE:LINE:COL errors, --version, --help, $SLUICE_CONFIG,
 * and a normal start with a bad config exits 1 before listening.
 * No broker runs here: --check must not need one.
 */
const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, test } = require('node:test');
const { freePort, spawnTracked, sleep, withTimeout } = require('./lib/procs');
const { requireBinary, runSluice, writeConfig } = require('./lib/sluice');

const ENV = { ...process.env, SLUICE_IT_REDIS_PORT: '6390' };
delete ENV.SLUICE_IT_UNSET_VAR;
delete ENV.SLUICE_CONFIG;

const GOOD = `listen: 127.0.0.1:18080
sources:
  - name: cache
    type: redis
    url: redis://127.0.0.1:\${SLUICE_IT_REDIS_PORT}
  - name: plant
    type: mqtt
    url: mqtt://127.0.0.1:\${SLUICE_IT_MQTT_PORT:-1883}
routes:
  - path: /orders/{region}
    topics: ["cache:orders:{region}"]
  - path: /fixed
    topics: ["cache:fixed"]
    event: tick
  - path: /sites/{site}/temperature
    topics: ["plant:factory/{site}/+/temperature"]
stream:
  heartbeat: 1s
`;

/* 1-based number of the first line of text that contains needle. */
function lineOf(text, needle) {
    const i = text.split('\n').findIndex((l) => l.includes(needle));
    assert.ok(i >= 0, `${needle} in the config`);
    return i + 1;
}

/* The stderr lines of the form FILE:LINE:COL: message, parsed. */
function positionedErrors(stderr, file) {
    const re = /^(.*):(\d+):(\d+): (.*)$/;
    return stderr.split('\n').map((l) => l.match(re)).filter(Boolean)
        .filter((m) => m[1] === file)
        .map((m) => ({ line: Number(m[2]), col: Number(m[3]), message: m[4] }));
}

/* Runs --check on text with GOOD's first lines replaced; expects exit 1
 * and one error at the line holding `needle`. Returns the error. */
async function expectCheckError(text, needle) {
    const file = writeConfig(text, 'bad.yaml');
    const r = await runSluice(['--check', '-c', file], 5000, ENV);
    assert.equal(r.code, 1, `exit status; stderr:\n${r.stderr}`);
    const errors = positionedErrors(r.stderr, file);
    assert.ok(errors.length >= 1, `a "${file}:LINE:COL: message" line in:\n${r.stderr}`);
    const want = lineOf(text, needle);
    const err = errors.find((e) => e.line === want);
    assert.ok(err, `an error at line ${want}, got ${JSON.stringify(errors)}`);
    assert.ok(err.col >= 1, `a column: ${JSON.stringify(err)}`);
    return err;
}

describe('--check', () => {
    test('a good config exits 0 and prints the resolved routes', async () => {
        const file = writeConfig(GOOD, 'good.yaml');
        const r = await runSluice(['--check', '-c', file], 5000, ENV);
        assert.equal(r.code, 0, `exit status; stderr:\n${r.stderr}`);
        /* Each route's block (from its path to the next route's path)
         * names its source, on the path's line or the lines below it. */
        const routes = [['/orders/{region}', 'cache:'], ['/fixed', 'cache:'],
            ['/sites/{site}/temperature', 'plant:']];
        const starts = routes.map(([path]) => r.stdout.indexOf(path));
        starts.forEach((start, i) => {
            assert.ok(start >= 0 && (i === 0 || start > starts[i - 1]),
                `route ${routes[i][0]} listed in order in:\n${r.stdout}`);
        });
        starts.forEach((start, i) => {
            const block = r.stdout.slice(start, i + 1 < starts.length ? starts[i + 1] : undefined);
            assert.ok(block.includes(routes[i][1]), `${routes[i][0]} with its source ${routes[i][1]}`);
        });
        for (const sub of ['orders:*', 'fixed', 'factory/+/+/temperature']) {
            assert.ok(r.stdout.includes(sub), `upstream subscription ${sub} in:\n${r.stdout}`);
        }
    });

    test('$SLUICE_CONFIG is the default config file', async () => {
        const file = writeConfig(GOOD, 'env.yaml');
        const r = await runSluice(['--check'], 5000, { ...ENV, SLUICE_CONFIG: file });
        assert.equal(r.code, 0, `exit status; stderr:\n${r.stderr}`);
        assert.ok(r.stdout.includes('/sites/{site}/temperature'), r.stdout);
    });

    test('an unknown key exits 1 with its position and a spelling hint', async () => {
        const text = GOOD.replace('  heartbeat: 1s', '  hearbeat: 1s');
        const err = await expectCheckError(text, 'hearbeat');
        assert.equal(err.col, 3, `column of the key: ${JSON.stringify(err)}`);
        assert.match(err.message, /hearbeat/);
        assert.match(err.message, /heartbeat/, 'the hint names the close spelling');
    });

    test('an unset ${VAR} without default exits 1 at its line', async () => {
        const text = GOOD.replace('${SLUICE_IT_REDIS_PORT}', '${SLUICE_IT_UNSET_VAR}');
        const err = await expectCheckError(text, 'SLUICE_IT_UNSET_VAR');
        assert.match(err.message, /SLUICE_IT_UNSET_VAR/);
    });

    test('a route with an unknown source exits 1 at the topic', async () => {
        const text = GOOD.replace('"cache:fixed"', '"nosuch:fixed"');
        const err = await expectCheckError(text, 'nosuch:fixed');
        assert.match(err.message, /nosuch/);
    });

    test('a route on a reserved path exits 1', async () => {
        const text = GOOD.replace('path: /fixed', 'path: /healthz');
        await expectCheckError(text, 'path: /healthz');
    });

    test('a missing file exits 1 naming it', async () => {
        const r = await runSluice(['--check', '-c', '/nonexistent/sluice.yaml'], 5000, ENV);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^\/nonexistent\/sluice\.yaml:/m);
    });
});

describe('other options', () => {
    test('--version prints a version and exits 0', async () => {
        const r = await runSluice(['--version'], 5000, ENV);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /\b\d+\.\d+\.\d+\b/);
    });

    test('--help prints the usage and exits 0', async () => {
        const r = await runSluice(['--help'], 5000, ENV);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /--check/);
        assert.match(r.stdout, /-c\b/);
    });

    test('a normal start with a bad config exits 1 without listening', async () => {
        const port = await freePort();
        const text = GOOD.replace('listen: 127.0.0.1:18080', `listen: 127.0.0.1:${port}`)
            .replace('  heartbeat: 1s', '  hearbeat: 1s');
        const file = writeConfig(text, 'bad-start.yaml');
        const child = spawnTracked(requireBinary(), ['-c', file], { env: ENV });
        let connected = false;
        let done = false;
        const exited = child.exited.then((r) => { done = true; return r; });
        const deadline = Date.now() + 5000;
        while (!done && Date.now() < deadline) {
            connected = connected || await canConnect(port);
            await sleep(20);
        }
        const { code } = await withTimeout(exited, 'sluice to exit on a bad config', 1000);
        assert.equal(code, 1, `exit status; output:\n${child.output}`);
        assert.equal(connected, false, 'nothing listened on the configured port');
        assert.ok(positionedErrors(child.stderrText, file).length >= 1, child.stderrText);
    });
});

function canConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
    });
}
