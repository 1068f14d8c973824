'use strict';
/*
 * dashboard.test.js - the demo, as a person sees it, in headless Chromium.
 *
 * Starts the demo's pieces on free loopback ports: redis-server and
 * mosquitto (lib/), sluice with deploy/demo/sluice.yaml (ports and the
 * history dir through its ${VAR}s), deploy/demo/publisher.js and
 * deploy/demo/serve.js. Then opens the dashboard and checks that:
 *   1. live values render and change, the chart draws, orders arrive;
 *   2. after sluice is stopped and started again with its history dir,
 *      both streams show "reconnecting", then "open" again with a
 *      reconnect counted, values keep coming, and there is no reset;
 *   3. after sluice is killed and started without history persistence,
 *      the browser's resume gets `event: reset` and the page says
 *      "history reset: <reason>", then fills up again;
 * and that serve.js does not leave its folder.
 *
 * Screenshots: /tmp/sluice-dashboard.png (live) and
 * /tmp/sluice-dashboard-reset.png (after the reset).
 * Needs /usr/bin/chromium (or CHROMIUM) and playwright-core from
 * tests/node_modules.
 */
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const { freePort, makeTempDir, spawnTracked, stopProcess, waitFor } = require('./lib/procs');
const { startRedis } = require('./lib/redis');
const { startMosquitto } = require('./lib/mosquitto');
const { requireBinary } = require('./lib/sluice');

const REPO = path.resolve(__dirname, '../..');
const DEMO = path.join(REPO, 'deploy/demo');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const SHOT = '/tmp/sluice-dashboard.png';
const SHOT_RESET = '/tmp/sluice-dashboard-reset.png';
const STEP_MS = 15000;

/* Everything the tests share: ports, processes, the browser page. */
const demo = {
    dir: null,
    ports: {},
    sluice: null,
    sluiceLog: '',
    publisher: null,
    server: null,
    redis: null,
    mosquitto: null,
    browser: null,
    page: null,
    pageErrors: [],
};

function sluiceEnv(historyDir) {
    return {
        ...process.env,
        SLUICE_PORT: String(demo.ports.sluice),
        MQTT_PORT: String(demo.mosquitto.port),
        REDIS_PORT: String(demo.redis.port),
        DASHBOARD_PORT: String(demo.ports.dashboard),
        SLUICE_HISTORY_DIR: historyDir,
    };
}

function sluiceTail(lines = 30) {
    const text = demo.sluiceLog + (demo.sluice ? demo.sluice.output : '');
    return text.split('\n').slice(-lines - 1).join('\n');
}

async function httpStatus(url) {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status;
}

/* Starts sluice with configFile and waits for /healthz and /readyz. */
async function startSluice(configFile, historyDir) {
    const child = spawnTracked(requireBinary(), ['-c', configFile], { env: sluiceEnv(historyDir) });
    demo.sluice = child;
    const base = `http://127.0.0.1:${demo.ports.sluice}`;
    const alive = () => {
        if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`sluice exited (${child.exitCode ?? child.signalCode})`);
        }
    };
    await waitFor(async () => { alive(); return (await httpStatus(`${base}/healthz`)) === 200; },
        'sluice /healthz', STEP_MS, 100);
    await waitFor(async () => { alive(); return (await httpStatus(`${base}/readyz`)) === 200; },
        'sluice /readyz (both brokers connected)', STEP_MS, 100);
}

async function stopSluice(signal) {
    const child = demo.sluice;
    const result = await stopProcess(child, signal, 10000);
    demo.sluiceLog += child.output;
    demo.sluice = null;
    return result;
}

/* Waits for the `line` a child prints on stderr (e.g. "serve: ..."). */
function waitForOutput(child, pattern, what) {
    return waitFor(() => {
        if (child.exitCode !== null) {
            throw new Error(`${what} exited: ${child.output}`);
        }
        return pattern.test(child.output);
    }, what, STEP_MS, 50);
}

/* What the page shows, read from its DOM in one go. */
function readPage() {
    return demo.page.evaluate(() => {
        const text = (id) => document.getElementById(id).textContent;
        const stream = (name) => ({
            state: document.getElementById(`status-${name}`).dataset.state,
            lastId: text(`lastid-${name}`),
            events: Number(text(`events-${name}`)),
            reconnects: Number(text(`reconnects-${name}`)),
        });
        const notice = document.getElementById('notice');
        return {
            plant: stream('plant'),
            orders: stream('orders'),
            cards: [...document.querySelectorAll('.card')].map((c) => ({
                sensor: c.dataset.sensor,
                temperature: c.querySelector('.temperature .value').textContent,
                pressure: c.querySelector('.pressure .value').textContent,
            })),
            tickerItems: document.querySelectorAll('#ticker li').length,
            notice: notice.hidden ? null : text('notice-text'),
        };
    });
}

/* Counts canvas pixels in a saturated colour: the chart's lines (the grid
 * and labels are grey). */
function chartLinePixels() {
    return demo.page.evaluate(() => {
        const c = document.getElementById('chart');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
            const max = Math.max(data[i], data[i + 1], data[i + 2]);
            const min = Math.min(data[i], data[i + 1], data[i + 2]);
            if (data[i + 3] > 200 && max - min > 80) {
                n++;
            }
        }
        return n;
    });
}

const NUMBER = /^-?\d+(\.\d+)?$/;

function numericCards(page) {
    return page.cards.filter((c) => NUMBER.test(c.temperature) && NUMBER.test(c.pressure));
}

/* Waits until at least 4 cards show numbers, then until one of them
 * changes: the values are live, not a frozen snapshot. */
async function expectLiveValues(what) {
    const first = await waitFor(async () => {
        const p = await readPage();
        return numericCards(p).length >= 4 ? p : null;
    }, `${what}: four sensor cards with numbers`, STEP_MS, 100);
    const before = new Map(first.cards.map((c) => [c.sensor, `${c.temperature}/${c.pressure}`]));
    await waitFor(async () => {
        const p = await readPage();
        return p.cards.some((c) => before.has(c.sensor) &&
            before.get(c.sensor) !== `${c.temperature}/${c.pressure}` && NUMBER.test(c.temperature));
    }, `${what}: a sensor value to change`, STEP_MS, 100);
}

async function waitForState(stream, state, what) {
    return waitFor(async () => (await readPage())[stream].state === state,
        `${what}: /${stream} badge "${state}"`, STEP_MS, 50);
}

/* Adds sluice's log tail to a failing test's message. */
function withSluiceLog(fn) {
    return async (t) => {
        try {
            await fn(t);
        } catch (err) {
            if (err && typeof err === 'object') {
                err.message += `\n--- sluice output (tail) ---\n${sluiceTail()}`;
            }
            throw err;
        }
        assert.deepEqual(demo.pageErrors, [], 'no uncaught errors in the page');
    };
}

/* A GET with the path sent exactly as given (no URL normalisation). */
function rawGet(port, rawPath) {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: rawPath, method: 'GET' }, (res) => {
            let body = '';
            res.on('data', (chunk) => { body += chunk; });
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        req.setTimeout(2000, () => req.destroy(new Error('timeout')));
        req.end();
    });
}

describe('demo dashboard in Chromium', { timeout: 240000 }, () => {
    before(async () => {
        assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (set CHROMIUM)`);
        requireBinary();
        demo.dir = makeTempDir('sluice-dashboard-');
        [demo.redis, demo.mosquitto] = await Promise.all([startRedis(), startMosquitto()]);
        demo.ports.sluice = await freePort();
        demo.ports.dashboard = await freePort();

        await startSluice(path.join(DEMO, 'sluice.yaml'), path.join(demo.dir, 'history'));

        demo.publisher = spawnTracked(process.execPath, [path.join(DEMO, 'publisher.js')], {
            env: {
                ...process.env,
                MQTT_URL: `mqtt://127.0.0.1:${demo.mosquitto.port}`,
                REDIS_URL: `redis://127.0.0.1:${demo.redis.port}`,
            },
        });
        demo.server = spawnTracked(process.execPath, [path.join(DEMO, 'serve.js')], {
            env: {
                ...process.env,
                PORT: String(demo.ports.dashboard),
                SLUICE_URL: `http://127.0.0.1:${demo.ports.sluice}`,
            },
        });
        await waitForOutput(demo.server, /serve: dashboard on http/, 'serve.js');
        await waitForOutput(demo.publisher, /mqtt .*connected/, 'publisher (MQTT)');

        const { chromium } = require('playwright-core');
        demo.browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: CHROMIUM_ARGS,
        });
        demo.page = await demo.browser.newPage({ viewport: { width: 1280, height: 820 } });
        demo.page.on('pageerror', (err) => demo.pageErrors.push(err.message));
        await demo.page.goto(`http://127.0.0.1:${demo.ports.dashboard}/`);
    });

    after(async () => {
        if (demo.browser) {
            await demo.browser.close();
        }
        for (const child of [demo.publisher, demo.server, demo.sluice]) {
            if (child) {
                await stopProcess(child, 'SIGTERM', 5000);
            }
        }
        for (const broker of [demo.mosquitto, demo.redis]) {
            if (broker) {
                await broker.stop();
            }
        }
    });

    it('renders live sensor values, the chart and the order ticker', withSluiceLog(async () => {
        await waitForState('plant', 'open', 'first connect');
        await waitForState('orders', 'open', 'first connect');
        await expectLiveValues('first connect');

        await waitFor(async () => (await readPage()).tickerItems >= 2, 'two orders in the ticker',
            STEP_MS, 100);
        await waitFor(async () => (await chartLinePixels()) > 200, 'the chart to draw lines',
            STEP_MS, 200);

        const p = await readPage();
        assert.match(p.plant.lastId, /^[0-9A-Za-z._:-]+$/, 'the last event id is shown');
        assert.match(p.orders.lastId, /^[0-9A-Za-z._:-]+$/);
        assert.ok(p.plant.events >= 8, `plant events counted (${p.plant.events})`);
        assert.equal(p.notice, null, 'no reset notice on a fresh connect');
        assert.deepEqual(p.cards.map((c) => c.sensor),
            ['a/mixer', 'a/pump', 'b/conveyor', 'b/extruder'], 'one card per sensor, sorted');

        await demo.page.screenshot({ path: SHOT, fullPage: true });
    }));

    it('reconnects after sluice restarts and resumes without a reset', withSluiceLog(async () => {
        const before = await readPage();
        await stopSluice('SIGTERM');
        await waitForState('plant', 'reconnecting', 'sluice stopped');
        await waitForState('orders', 'reconnecting', 'sluice stopped');

        await startSluice(path.join(DEMO, 'sluice.yaml'), path.join(demo.dir, 'history'));
        await waitFor(async () => {
            const p = await readPage();
            return p.plant.state === 'open' && p.orders.state === 'open' &&
                p.plant.reconnects >= 1 && p.orders.reconnects >= 1;
        }, 'both streams open again, each with a reconnect counted', STEP_MS, 100);

        await expectLiveValues('after the restart');
        const p = await readPage();
        assert.ok(p.plant.events > before.plant.events, 'new plant events after the restart');
        assert.notEqual(p.plant.lastId, before.plant.lastId, 'the last id moved on');
        assert.equal(p.notice, null,
            'a restart that keeps history.dir resumes without "event: reset"');
    }));

    it('shows "history reset" after sluice comes back without its history', withSluiceLog(async () => {
        const demoConfig = fs.readFileSync(path.join(DEMO, 'sluice.yaml'), 'utf8');
        const memoryOnly = demoConfig.replace(/^\s*dir:.*\n/m, '');
        assert.notEqual(memoryOnly, demoConfig, 'the demo config has a history dir to drop');
        const configFile = path.join(demo.dir, 'sluice-memory.yaml');
        fs.writeFileSync(configFile, memoryOnly);

        await stopSluice('SIGKILL');
        await waitForState('plant', 'reconnecting', 'sluice killed');
        await startSluice(configFile, path.join(demo.dir, 'unused'));

        const notice = await waitFor(async () => (await readPage()).notice,
            'the "history reset" notice', STEP_MS, 100);
        assert.match(notice, /^history reset: (unknown-id|expired) /);
        await waitForState('plant', 'open', 'after the reset');
        await expectLiveValues('after the reset');
        await waitFor(async () => (await readPage()).tickerItems >= 1, 'orders after the reset',
            STEP_MS, 100);
        await demo.page.screenshot({ path: SHOT_RESET, fullPage: true });

        await demo.page.click('#notice-close');
        assert.equal((await readPage()).notice, null, 'the notice can be dismissed');
    }));

    it('serve.js serves the dashboard and config.js, and nothing outside', withSluiceLog(async () => {
        const port = demo.ports.dashboard;
        const config = await rawGet(port, '/config.js');
        assert.equal(config.status, 200);
        assert.ok(config.body.includes(`"url":"http://127.0.0.1:${demo.ports.sluice}"`), config.body);
        assert.equal((await rawGet(port, '/app.js')).status, 200);
        for (const bad of ['/../publisher.js', '/%2e%2e/publisher.js', '/..%2fserve.js',
            '/%2e%2e%2f%2e%2e%2fsluice.yaml', '/x/../../run.sh', '/%00', '/%zz']) {
            const res = await rawGet(port, bad);
            assert.equal(res.status === 404 || res.status === 400, true, `${bad} -> ${res.status}`);
            assert.ok(!res.body.includes('require('), `${bad} must not leak a file`);
        }
    }));
});
