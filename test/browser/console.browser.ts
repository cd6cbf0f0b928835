import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { build, stripeDelivery, stripeEvent } from '../helper.js'

// The operator console in a real browser: Debian's chromium (CHROMIUM to use another) driven by
// playwright-core. `npm run test:console` (run by CI); with SCREENSHOTS=<dir> it also saves the pages
// shown in docs/console.md.

const ADMIN_TOKEN = 'admin-token-0123456789abcdef'
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const screenshots = process.env.SCREENSHOTS

t.test('an operator signs in, finds a delivery, replays it, and resolves an exception', async t => {
  const { app } = await build(t, { ADMIN_TOKEN, AUTH_FAILURE_LIMIT: '5' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const sent = (await app.inject(stripeDelivery(stripeEvent({ type: 'invoice.paid' })))).json()
  const hostile = (await app.inject(stripeDelivery(stripeEvent({ type: '<script>alert(1)</script>', data: { object: { name: '"><img src=x onerror=alert(2)>' } } })))).json()
  const original = stripeEvent({ type: 'payment_intent.succeeded', data: { object: { id: 'pi_1', amount: 2000, currency: 'eur' } } })
  const conflicted = (await app.inject(stripeDelivery(original))).json()
  await app.inject(stripeDelivery({ ...original, data: { object: { id: 'pi_1', amount: 2500, currency: 'eur' } } }))
  await app.inject({ ...stripeDelivery(stripeEvent()), headers: { 'content-type': 'application/json', 'stripe-signature': 'garbage' } })

  const browser: Browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(async () => { await browser.close() })
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } })
  const page = await context.newPage()
  const dialogs: string[] = []
  page.on('dialog', dialog => { dialogs.push(dialog.message()); dialog.dismiss().catch(() => {}) })
  const shoot = async (name: string) => {
    if (screenshots === undefined) return
    await mkdir(screenshots, { recursive: true })
    await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true })
  }

  await page.goto(`${base}/console/runs`)
  t.equal(new URL(page.url()).pathname, '/console/sign-in', 'signed out: sent to sign in')
  await page.fill('input[name=token]', 'not-the-token')
  await page.click('button:has-text("Sign in")')
  t.match(await page.textContent('[role=alert]'), 'not the admin token', 'a wrong token is refused')
  await page.fill('input[name=name]', 'ana')
  await page.fill('input[name=token]', ADMIN_TOKEN)
  await page.click('button:has-text("Sign in")')
  t.equal(await page.textContent('h1'), 'Overview', 'signed in')
  await shoot('overview')

  await page.click('nav >> text=Runs')
  await page.selectOption('select[name=status]', 'received')
  await page.click('button:has-text("Filter")')
  t.match(new URL(page.url()).search, 'status=received', 'filtered')
  t.ok(await page.isVisible(`a[href="/console/runs/${sent.run_id as string}"]`), 'the delivery sent a moment before is listed')
  await shoot('runs')

  await page.click(`a[href="/console/runs/${sent.run_id as string}"]`)
  const historyBefore = await page.locator('h2:has-text("History") + table tbody tr').count()
  await page.fill('form[action$="/replay"] input[name=note]', 'checking the handler again')
  await page.click('button:has-text("Replay")')
  t.match(await page.textContent('[role=status]'), 'Replay requested')
  const historyAfter = await page.locator('h2:has-text("History") + table tbody tr').count()
  t.equal(historyAfter, historyBefore + 1, 'the history grew by the replay')
  t.match(await page.textContent('h2:has-text("History") + table'), 'checking the handler again')
  await shoot('run')

  // A state change without the CSRF token, with the session cookie of this browser: refused.
  const forged = await context.request.post(`${base}/console/runs/${sent.run_id as string}/replay`, { form: { note: 'forged' } })
  t.equal(forged.status(), 403, 'no CSRF token: 403')

  await page.goto(`${base}/console/runs/${hostile.run_id as string}`)
  t.match(await page.textContent('pre'), '"><img src=x onerror=alert(2)>', 'the payload is shown as text')
  t.match(await page.textContent('h2 + table, table'), '<script>alert(1)</script>', 'the event type too')
  t.equal(await page.locator('main img').count(), 0, 'no element came from the payload')
  t.same(dialogs, [], 'and nothing ran')

  await page.click('nav >> text=Exceptions')
  await page.click('main table a')
  t.match(await page.textContent('h1'), 'payload_conflict', 'the exception page')
  t.ok(await page.isVisible(`a[href="/console/runs/${conflicted.run_id as string}"]`), 'linked to its run')
  t.ok(await page.isVisible('.side .diff'), 'the two payloads side by side, the difference marked')
  await shoot('exception')
  await page.fill('form[action$="/resolve"] input[name=note]', 'the customer was charged 2000, as stored')
  await page.selectOption('form[action$="/resolve"] select[name=action]', 'close')
  await page.click('button:has-text("Resolve")')
  t.match(await page.textContent('[role=status]'), 'Exception resolved')
  t.match(await page.textContent('section'), 'the customer was charged 2000, as stored', 'the note is recorded')
  t.match(await page.textContent('section'), 'by console:ana', 'and who decided')

  // Two runs failed (a destination was down): retried together, after a count and a confirmation.
  await app.pg.query("UPDATE ops.runs SET status = 'failed', attempts = 8, last_error = 'destination answered 503' WHERE run_id = ANY($1::uuid[])", [[sent.run_id, hostile.run_id]])
  await page.goto(`${base}/console/runs?status=failed`)
  await page.click('text=Retry every failed run matching this filter')
  t.match(await page.textContent('main'), '2 failed runs match', 'the count first')
  await shoot('retry')
  await page.fill('form[action="/console/retry"] input[name=note]', 'the destination is back')
  await page.click('button:has-text("Retry 2 runs")')
  t.match(await page.textContent('[role=status]'), '2 runs queued again', 'then the retry')
  const { rows: [{ n }] } = await app.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE status = 'failed'")
  t.equal(n, 0, 'no failed run left')

  await page.click('nav >> text=Refusals')
  t.match(await page.textContent('table'), 'malformed_signature_header', 'the refused delivery, by reason')
  await shoot('refusals')

  await page.click('button:has-text("Sign out")')
  await page.goto(`${base}/console`)
  t.equal(new URL(page.url()).pathname, '/console/sign-in', 'signed out: every page sends to sign in')
})
