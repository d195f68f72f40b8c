'use strict'
// The admin dashboard in a real browser (headless Chromium through
// puppeteer-core): the connection count it shows follows the server, the
// chart gets new points, and a screenshot is taken: into the temporary
// directory, or, with UHURA_UPDATE_SCREENSHOT=1, over docs/dashboard.png
// (the README's picture), so a test run leaves the checkout as it was.

const { it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Uhura = require('..')
const { HOST, waitFor, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = process.env.UHURA_UPDATE_SCREENSHOT === '1'
  ? path.join(__dirname, '..', 'docs', 'dashboard.png')
  : path.join(os.tmpdir(), `uhura-dashboard-${process.pid}.png`)

it('the dashboard shows the connections, the chart updates live, and a screenshot is taken', { timeout: 60000 }, async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is not installed (.ci/run installs the chromium package)`)
    return
  }
  const puppeteer = require('puppeteer-core')
  const conns = []
  const server = Uhura.createServer((conn) => {
    conns.push(conn)
    conn.on('ev', (i) => conn.send('echo', i))
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  const clients = []
  const connect = async () => {
    const c = Uhura.createClient({ port: server.address().port, host: HOST })
    c.on('echo', () => {})
    clients.push(c)
    await waitFor(c, 'connect', 5000)
    return c
  }
  const admin = await new Promise((resolve, reject) => {
    const a = server.listenAdmin({ port: 0, token: 'dash', interval: 200 }, (err) => err ? reject(err) : resolve(a))
  })
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
  })
  t.after(async () => {
    await browser.close()
    for (const c of clients) c.disconnect()
    await new Promise((resolve) => server.close(() => resolve()))
  })
  for (let i = 0; i < 2; i++) await connect()
  const page = await browser.newPage()
  await page.setViewport({ width: 1200, height: 900 })
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  await page.goto(`http://127.0.0.1:${admin.address().port}/?token=dash`, { waitUntil: 'load' })
  const shows = (n) => page.waitForFunction(
    (n) => document.getElementById('connections-current').textContent === String(n) &&
      document.querySelectorAll('#connections tbody tr').length === n,
    { timeout: 10000 }, n)
  await shows(2)
  const pointsBefore = await page.evaluate(() => window.uhuraDashboard.points)

  // More clients, and traffic for the chart.
  for (let i = 0; i < 3; i++) await connect()
  const traffic = setInterval(() => clients.forEach((c, i) => c.send('ev', i)), 20)
  t.after(() => clearInterval(traffic))
  await shows(5)
  await page.waitForFunction((before) => window.uhuraDashboard.points >= before + 5, { timeout: 10000 }, pointsBefore)
  await page.waitForFunction(() => Number(document.getElementById('events-in-rate').textContent) > 0, { timeout: 10000 })
  assert.equal(await page.$eval('#status', (e) => e.textContent), 'live')
  assert.ok(await page.$('#chart .uplot canvas'), 'uPlot drew its chart')

  // Sorting the table by a column header.
  await page.click('#connections th[data-key="id"]')
  const ids = await page.$$eval('#connections tbody tr td:first-child', (tds) => tds.map((td) => Number(td.textContent)))
  assert.deepEqual(ids, ids.slice().sort((a, b) => b - a), 'a second click on id sorts descending')

  // A few more seconds of history make a more telling picture.
  await new Promise((resolve) => setTimeout(resolve, 3000))
  clearInterval(traffic)
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  assert.ok(fs.statSync(SCREENSHOT).size > 10000, 'a screenshot was written')
  if (process.env.UHURA_UPDATE_SCREENSHOT !== '1') fs.rmSync(SCREENSHOT)
  assert.deepEqual(pageErrors, [])
})
