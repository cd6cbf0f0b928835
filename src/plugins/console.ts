import { hkdfSync } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import formbody from '@fastify/formbody'
import helmet from '@fastify/helmet'
import secureSession from '@fastify/secure-session'
import csrf from '@fastify/csrf-protection'
import { constantTimeEqual } from '../signatures.js'
import { RUN_STATUSES } from '../queue.js'
import { HttpError } from '../errors.js'
import { html, STYLESHEET, type Html } from '../console/html.js'
import { EVENTS_SHOWN } from '../admin/repository.js'

/** Characters of a run's payload a page shows; the admin API has the whole. */
const PAYLOAD_SHOWN_CHARS = 262_144
import type { RetryFilter } from '../admin/repository.js'

declare module '@fastify/secure-session' {
  interface SessionData { operator: boolean, name: string }
}
declare module 'fastify' {
  interface FastifyContextConfig {
    /** A console page open without signing in (the sign-in form, the stylesheet). */
    consolePublic?: boolean
  }
}

/**
 * The operator console under /console (only when ADMIN_TOKEN is set): server-rendered pages on the
 * admin repository (src/admin/repository.ts) — overview, runs, a run with its payload and history
 * (replay), the exception queue (resolve with retry or close, dismiss, with a note), refusals.
 * Signing in with ADMIN_TOKEN gives a signed, encrypted session cookie (HttpOnly, SameSite=Strict,
 * Secure outside development, 12 hours); every state change carries a CSRF token; a strict
 * Content-Security-Policy allows no script at all, and every value shown is escaped (src/console/html.ts).
 * A failed sign-in counts toward the client's refusal limit like a forged delivery.
 */
export default async function operatorConsole (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify
  const token = config.adminToken as string
  const repository = fastify.adminRepository
  const providers = (): string[] => [...fastify.providers.definitions.keys()]

  await fastify.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"]
      }
    },
    // Sessions are cookies of this path only; nothing here is for other origins.
    crossOriginResourcePolicy: { policy: 'same-origin' }
  })
  await fastify.register(formbody, { bodyLimit: 16384 })
  await fastify.register(secureSession, {
    // Every replica derives the same key from ADMIN_TOKEN: a session works behind a balancer, and
    // rotating the token signs everyone out.
    key: Buffer.from(hkdfSync('sha256', token, 'hookgate-console', 'session-key', 32)),
    cookieName: 'hookgate_console',
    expiry: 12 * 3600,
    cookie: { path: '/console', httpOnly: true, sameSite: 'strict', secure: config.production }
  })
  await fastify.register(csrf, { sessionPlugin: '@fastify/secure-session' })

  // Signed out, every page but the sign-in form sends the operator there.
  fastify.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.config.consolePublic === true) return
    if (request.session.get('operator') !== true) return await reply.code(303).header('location', '/console/sign-in').send()
  })

  /** Who decides, for the history: `console:<the name given at sign-in>`. */
  const operator = (request: FastifyRequest): string => request.session.get('name') ?? 'console:operator'

  const page = (reply: FastifyReply, title: string, body: Html, status = 200): FastifyReply => {
    const csrfToken = reply.generateCsrf()
    const signedIn = reply.request.session.get('operator') === true
    return reply.code(status).type('text/html; charset=utf-8').send(html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · hookgate</title><link rel="stylesheet" href="/console/console.css"></head>
<body><header><strong>hookgate</strong>${signedIn
  ? html`<nav><a href="/console">Overview</a> · <a href="/console/runs">Runs</a> · <a href="/console/exceptions">Exceptions</a> · <a href="/console/refusals">Refusals</a></nav>
<form method="post" action="/console/sign-out"><input type="hidden" name="_csrf" value="${csrfToken}"><button>Sign out</button></form>`
  : ''}</header>
<main><h1>${title}</h1>${body}</main></body></html>`.text)
  }
  /** A form's CSRF token (one secret per session; each token generated is valid). */
  const csrfField = (reply: FastifyReply): Html => html`<input type="hidden" name="_csrf" value="${reply.generateCsrf()}">`
  const when = (value: unknown): string => value === null || value === undefined ? '' : new Date(value as string).toISOString().replace('T', ' ').slice(0, 19)

  fastify.get('/console.css', { config: { consolePublic: true } }, async (_request, reply) =>
    await reply.type('text/css; charset=utf-8').header('cache-control', 'max-age=3600').send(STYLESHEET))

  const signInForm = (reply: FastifyReply, message?: string): Html => html`${message === undefined ? '' : html`<p class="flash flash-error" role="alert">${message}</p>`}
<form method="post" action="/console/sign-in">${csrfField(reply)}
<label>Your name <input name="name" maxlength="100" autocomplete="username" placeholder="recorded with your decisions"></label>
<label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button>Sign in</button></form>`

  fastify.get('/sign-in', { config: { consolePublic: true } }, async (_request, reply) => page(reply, 'Sign in', signInForm(reply)))

  fastify.post<{ Body: { token?: string, name?: string } }>('/sign-in', { config: { consolePublic: true }, preHandler: fastify.csrfProtection }, async (request, reply) => {
    const limited = await fastify.signInLimit(request)
    if (limited !== undefined) return await reply.code(429).header('retry-after', String(limited)).send({ error: 'too_many_requests', message: 'too many failed sign-ins from this client, try again later' })
    if (!constantTimeEqual(String(request.body?.token ?? ''), token)) {
      const retryAfter = await fastify.countSignInFailure(request)
      if (retryAfter !== undefined) return await reply.code(429).header('retry-after', String(retryAfter)).send({ error: 'too_many_requests', message: 'too many failed sign-ins from this client, try again later' })
      request.log.info({ client_ip: request.ip }, 'console sign-in refused')
      return page(reply, 'Sign in', signInForm(reply, 'That is not the admin token.'), 401)
    }
    request.session.set('operator', true)
    // The token is shared: the name the operator gives is who the history says decided.
    request.session.set('name', `console:${nonEmpty(request.body?.name)?.slice(0, 100) ?? 'operator'}`)
    return await reply.code(303).header('location', '/console').send()
  })

  fastify.post('/sign-out', { preHandler: fastify.csrfProtection }, async (request, reply) => {
    request.session.delete()
    return await reply.code(303).header('location', '/console/sign-in').send()
  })

  const RANGES = { hour: { hours: 1, bucket: 60, buckets: 60, label: 'per minute, last hour' }, day: { hours: 24, bucket: 1200, buckets: 72, label: 'per 20 minutes, last 24 hours' } }
  fastify.get<{ Querystring: { range?: string } }>('/', async (request, reply) => {
    const rangeName = request.query.range === 'day' ? 'day' : 'hour'
    const range = RANGES[rangeName]
    const o = await repository.overview(range.hours, range.bucket)
    return page(reply, 'Overview', html`<div class="cards">
<div class="card">Runs waiting<b>${o.waiting}</b></div>
<div class="card">Oldest waiting<b>${Math.round(o.oldest_seconds)} s</b></div>
<div class="card"><a href="/console/exceptions">Open exceptions</a><b>${o.open_exceptions}</b></div>
<div class="card"><a href="/console/runs?status=failed">Failed, last 24 h</a><b>${o.failed_last_day}</b></div></div>
<h2>Deliveries ${range.label}</h2>
<p>${rangeName === 'hour' ? html`<strong>last hour</strong> · <a href="/console?range=day">last 24 hours</a>` : html`<a href="/console">last hour</a> · <strong>last 24 hours</strong>`}</p>
${bucketChart(o.buckets, range.buckets, range.hours === 1 ? '60 min ago' : '24 h ago')}
<h2>Runs received ${rangeName === 'hour' ? 'in the last hour' : 'in the last 24 hours'}</h2>
<table><thead><tr><th>provider</th><th>status</th><th>runs</th></tr></thead><tbody>
${o.period.map(r => html`<tr><td>${r.provider}</td><td class="status-${r.status}"><a href="/console/runs?provider=${encodeURIComponent(r.provider)}&amp;status=${r.status}">${r.status}</a></td><td>${r.count}</td></tr>`)}
</tbody></table>`)
  })

  fastify.get<{ Querystring: Record<string, string | undefined> }>('/runs', async (request, reply) => {
    const q = request.query
    const filter = {
      provider: nonEmpty(q.provider),
      status: RUN_STATUSES.find(s => s === q.status),
      event_type: nonEmpty(q.event_type),
      since: instant(q.since),
      until: instant(q.until),
      cursor: /^[0-9a-f-]{36}$/.test(q.cursor ?? '') ? q.cursor : undefined,
      limit: 50
    }
    const search = nonEmpty(q.search)
    if (search !== undefined) {
      // A run id or an idempotency key: straight to its run.
      const runId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(search) ? search.toLowerCase() : await repository.findRunByKey(providers(), search)
      if (runId !== undefined) return await reply.code(303).header('location', `/console/runs/${runId}`).send()
    }
    // (RunFilter's status is a union TypeBox types loosely: the value is one of RUN_STATUSES.)
    const { runs, next_cursor: next } = await repository.listRuns(filter as Parameters<typeof repository.listRuns>[0])
    const keep = new URLSearchParams(Object.entries({ provider: filter.provider, status: filter.status, event_type: filter.event_type, since: q.since, until: q.until })
      .filter(([, v]) => v !== undefined && v !== '') as Array<[string, string]>)
    const retryable = filter.status === 'failed' || filter.status === 'exception'
    const done = /^\d+$/.test(q.queued ?? '') ? html`<p class="flash" role="status">${q.queued} runs queued again, due one after another over ${q.over ?? '0'} s.</p>` : ''
    return page(reply, 'Runs', html`${done}<form method="get" action="/console/runs">
<label>Provider <select name="provider"><option value="">any</option>${providers().map(p => html`<option${p === filter.provider ? html` selected` : ''}>${p}</option>`)}</select></label>
<label>Status <select name="status"><option value="">any</option>${RUN_STATUSES.map(s => html`<option${s === filter.status ? html` selected` : ''}>${s}</option>`)}</select></label>
<label>Event type <input name="event_type" value="${filter.event_type ?? ''}"></label>
<label>From <input type="datetime-local" name="since" value="${q.since ?? ''}"></label>
<label>To <input type="datetime-local" name="until" value="${q.until ?? ''}"></label>
<label>Run id or key <input name="search" value="${search ?? ''}"></label>
<button>Filter</button></form>
${retryable ? html`<p><a href="/console/retry?${keep.toString()}">Retry every ${filter.status} run matching this filter…</a></p>` : ''}
${search !== undefined ? html`<p class="flash flash-error">No run has the id or key ${search}.</p>` : ''}
<table><thead><tr><th>received</th><th>provider</th><th>event type</th><th>key</th><th>status</th><th>attempts</th><th>last error</th></tr></thead><tbody>
${runs.map(r => html`<tr><td><a href="/console/runs/${r.run_id}">${when(r.received_at)}</a></td><td>${r.provider}</td><td>${r.event_type}</td><td>${r.idempotency_key}</td><td class="status-${r.status}">${r.status}</td><td>${r.attempts}</td><td>${(r.last_error ?? '').slice(0, 120)}</td></tr>`)}
</tbody></table>
${next === null ? '' : html`<p><a href="/console/runs?${keep.toString()}${keep.size > 0 ? '&' : ''}cursor=${next}">Older runs →</a></p>`}`)
  })

  fastify.get<{ Params: { runId: string }, Querystring: { done?: string } }>('/runs/:runId', async (request, reply) => {
    const run = /^[0-9a-f-]{36}$/.test(request.params.runId) ? await repository.getRun(request.params.runId) : undefined
    if (run === undefined) return page(reply, 'No such run', html`<p>No run ${request.params.runId}.</p>`, 404)
    const done = { replayed: 'Replay requested: the run is queued again.', resolved: 'Exception resolved.', dismissed: 'Exception dismissed.', busy: 'The run is being processed: try again when its attempt ends.' }[request.query.done ?? '']
    const whole = JSON.stringify(run.payload, null, 2)
    // A page carries at most PAYLOAD_SHOWN_CHARS of the payload; the whole is in the admin API.
    const payload = whole.length > PAYLOAD_SHOWN_CHARS ? `${whole.slice(0, PAYLOAD_SHOWN_CHARS)}\n…` : whole
    return page(reply, `Run ${run.idempotency_key}`, html`${done === undefined ? '' : html`<p class="flash" role="status">${done}</p>`}
<table><tbody>
<tr><th>run id</th><td>${run.run_id}</td></tr><tr><th>provider</th><td>${run.provider}</td></tr>
<tr><th>event type</th><td>${run.event_type}</td></tr><tr><th>status</th><td class="status-${run.status}">${run.status}</td></tr>
<tr><th>attempts</th><td>${run.attempts}</td></tr><tr><th>received</th><td>${when(run.received_at)}</td></tr>
<tr><th>completed</th><td>${when(run.completed_at)}</td></tr><tr><th>last error</th><td>${run.last_error}</td></tr>
<tr><th>retention</th><td>${run.tier === 'held' ? 'kept past its day for review' : run.tier === 'legacy' ? 'stored before partitions, dropped with the old table' : 'dropped with its day'}</td></tr>
</tbody></table>
<form method="post" action="/console/runs/${run.run_id}/replay">${csrfField(reply)}
<label>Note <input name="note" maxlength="2000"></label><button>Replay</button></form>
<h2>History</h2>
${run.events_total > run.events.length ? html`<p>${run.events_total} events: the first ${EVENTS_SHOWN.first} and the latest ${EVENTS_SHOWN.last} are shown.</p>` : ''}
<table><thead><tr><th>at</th><th>event</th><th>details</th></tr></thead><tbody>
${run.events.map(e => html`<tr><td>${when(e.at)}</td><td>${e.type}</td><td><code>${JSON.stringify(e.data)}</code></td></tr>`)}
</tbody></table>
${run.exceptions.length === 0 ? '' : html`<h2>Exceptions</h2>${run.exceptions.map(e => exceptionBlock(reply, e as ExceptionRow))}`}
<h2>Payload</h2><details open><summary>${whole.length} characters${payload === whole ? '' : html`, the first ${PAYLOAD_SHOWN_CHARS} shown (the whole payload: <code>GET /admin/runs/${run.run_id}</code>)`}</summary><pre>${payload}</pre></details>
<h2>Headers</h2><details><summary>stored headers (credentials and signatures are never stored)</summary><pre>${JSON.stringify(run.headers, null, 2)}</pre></details>`)
  })

  interface ExceptionRow { exception_id: string, reason: string, status: string, details: unknown, created_at: string, closed_at: string | null, closed_by: string | null, resolution: string | null, note: string | null }

  interface Copy { body_sha256: string, deliveries?: number, excerpt?: string, payload_erased?: boolean, delivery?: { client_ip?: string, request_id?: string, body_bytes?: number } }

  /**
   * One exception and its decision forms. A payload conflict: how many deliveries conflicted, each kept
   * copy as its hash, deliveries, size and excerpt, and `compare` (the exception's own page) one copy side by side
   * with the stored payload, the differing lines marked: a page holds one conflicting copy at most.
   */
  function exceptionBlock (reply: FastifyReply, e: ExceptionRow, compare?: { stored: string, copy: Copy, whole: string }): Html {
    const details = (e.details ?? {}) as Record<string, unknown>
    const copies = Array.isArray(details.copies) ? details.copies as Copy[] : undefined
    const side = (text: string, other: string): Html => {
      const others = new Set(other.split('\n'))
      return html`<pre>${text.split('\n').map(line => others.has(line) ? html`${line}\n` : html`<span class="diff">${line}</span>\n`)}</pre>`
    }
    const count = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`
    const copyList = (list: Copy[]): Html => html`<p>${count(Number(details.deliveries ?? list.length), 'conflicting delivery', 'conflicting deliveries')}; ${count(list.length, 'distinct body', 'distinct bodies')} kept${Number(details.uncopied) > 0 ? html`, ${count(Number(details.uncopied), 'delivery', 'deliveries')} of other bodies not kept` : ''}.</p>
<table><thead><tr><th>body sha256</th><th>deliveries</th><th>size</th><th>first from</th><th>excerpt</th></tr></thead><tbody>
${list.map(c => html`<tr><td><a href="/console/exceptions/${e.exception_id}?copy=${c.body_sha256}">${c.body_sha256.slice(0, 12)}…</a></td><td>${String(c.deliveries ?? 1)}</td><td>${c.payload_erased === true ? 'erased' : `${String(c.delivery?.body_bytes ?? '?')} bytes`}</td><td>${c.delivery?.client_ip ?? ''}</td><td><code>${c.excerpt ?? ''}</code></td></tr>`)}
</tbody></table>`
    return html`<section><h3>${e.reason} · <span class="status-${e.status}">${e.status}</span> · ${when(e.created_at)}</h3>
${copies === undefined
  ? html`<pre>${JSON.stringify(details, null, 2)}</pre>`
  : html`${copyList(copies)}${compare === undefined
    ? html`<p><a href="/console/exceptions/${e.exception_id}">Compare with the stored payload</a></p>`
    : html`<div class="side"><div><h4>stored payload</h4>${side(compare.stored, compare.whole)}</div><div><h4>the other delivery's payload (${compare.copy.body_sha256.slice(0, 12)}…)</h4>${side(compare.whole, compare.stored)}</div></div>`}`}
${e.status === 'open'
  ? html`<form method="post" action="/console/exceptions/${e.exception_id}/resolve">${csrfField(reply)}
<label>Note <input name="note" maxlength="2000"></label>
<label><select name="action"><option value="close">close</option><option value="retry">retry the run</option></select></label>
<button>Resolve</button></form>
<form method="post" action="/console/exceptions/${e.exception_id}/dismiss">${csrfField(reply)}<label>Note <input name="note" maxlength="2000"></label><button>Dismiss</button></form>`
  : html`<p>${e.resolution ?? e.status} by ${e.closed_by} at ${when(e.closed_at)}${e.note === null ? '' : html`: ${e.note}`}</p>`}</section>`
  }

  fastify.post<{ Params: { runId: string }, Body: { note?: string } }>('/runs/:runId/replay', { preHandler: fastify.csrfProtection }, async (request, reply) => {
    const runId = uuid(request.params.runId)
    const outcome = await repository.replayRun(runId, { by: operator(request), note: note(request.body) })
    if (outcome === 'not_found') throw new HttpError(404, 'not_found', 'no such run')
    return await reply.code(303).header('location', `/console/runs/${runId}?done=${outcome === 'requeued' ? 'replayed' : 'busy'}`).send()
  })

  fastify.post<{ Params: { exceptionId: string }, Body: { note?: string, action?: string } }>('/exceptions/:exceptionId/resolve', { preHandler: fastify.csrfProtection }, async (request, reply) => {
    const action = request.body?.action === 'retry' ? 'retry' : 'close'
    const exception = await repository.closeException(uuid(request.params.exceptionId), 'resolved', { action, note: note(request.body), by: operator(request) })
    return await reply.code(303).header('location', `/console/runs/${exception.run_id}?done=resolved`).send()
  })

  fastify.post<{ Params: { exceptionId: string }, Body: { note?: string } }>('/exceptions/:exceptionId/dismiss', { preHandler: fastify.csrfProtection }, async (request, reply) => {
    const exception = await repository.closeException(uuid(request.params.exceptionId), 'dismissed', { note: note(request.body), by: operator(request) })
    return await reply.code(303).header('location', `/console/runs/${exception.run_id}?done=dismissed`).send()
  })

  fastify.get<{ Querystring: { status?: string, cursor?: string } }>('/exceptions', async (request, reply) => {
    const status = (['open', 'resolved', 'dismissed'] as const).find(s => s === request.query.status) ?? 'open'
    const cursor = /^[0-9a-f-]{36}$/.test(request.query.cursor ?? '') ? request.query.cursor : undefined
    const { exceptions, next_cursor: next } = await repository.listExceptions(status, cursor, 50)
    return page(reply, 'Exceptions', html`<p>${(['open', 'resolved', 'dismissed'] as const).map(s => s === status ? html`<strong>${s}</strong> ` : html`<a href="/console/exceptions?status=${s}">${s}</a> `)}</p>
<table><thead><tr><th>raised</th><th>provider</th><th>event type</th><th>reason</th><th>decision</th></tr></thead><tbody>
${exceptions.map(e => html`<tr><td><a href="/console/exceptions/${e.exception_id}">${when(e.created_at)}</a></td><td>${e.provider}</td><td>${e.event_type}</td><td>${e.reason}</td><td>${e.status === 'open' ? '' : html`${e.resolution ?? e.status} by ${e.closed_by}${e.note === null ? '' : html`: ${e.note}`}`}</td></tr>`)}
</tbody></table>
${next === null ? '' : html`<p><a href="/console/exceptions?status=${status}&amp;cursor=${next}">Older →</a></p>`}`)
  })

  /** The filter of a bulk retry, from the runs page's query or the confirmation form. */
  const retryFilter = (q: Record<string, string | undefined>): RetryFilter => ({
    statuses: q.status === 'failed' || q.status === 'exception' ? [q.status] : ['failed', 'exception'],
    provider: nonEmpty(q.provider),
    eventType: nonEmpty(q.event_type),
    since: instant(q.since),
    until: instant(q.until)
  })
  const BULK_LIMIT = 10_000

  fastify.get<{ Querystring: Record<string, string | undefined> }>('/retry', async (request, reply) => {
    const filter = retryFilter(request.query)
    const count = await repository.countRetryable(filter)
    const taken = Math.min(count, BULK_LIMIT)
    const fields = Object.entries({ status: request.query.status, provider: filter.provider, event_type: filter.eventType, since: request.query.since, until: request.query.until })
      .filter(([, v]) => v !== undefined && v !== '')
    return page(reply, 'Retry runs', html`<p><strong>${count}</strong> ${filter.statuses.join(' or ')} runs match${filter.provider === undefined ? '' : html` (provider ${filter.provider})`}${filter.eventType === undefined ? '' : html` (event type ${filter.eventType})`}.
${count > BULK_LIMIT ? html` At most ${BULK_LIMIT} go at once (the oldest); retry again for the rest.` : ''}</p>
<p>They are queued again with a fresh count of attempts, due one after another at ${config.bulkRetryPerSecond} runs/s
(about ${Math.ceil(taken / config.bulkRetryPerSecond)} s), so that live deliveries keep their turn. Their open exceptions are resolved with “retry”.</p>
${count === 0
  ? html`<p><a href="/console/runs">Back to the runs</a></p>`
  : html`<form method="post" action="/console/retry">${csrfField(reply)}${fields.map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}
<input type="hidden" name="expected" value="${taken}">
<label>Note <input name="note" maxlength="2000"></label><button>Retry ${taken} runs</button> <a href="/console/runs">Cancel</a></form>`}`)
  })

  fastify.post<{ Body: Record<string, string | undefined> }>('/retry', { preHandler: fastify.csrfProtection }, async (request, reply) => {
    const expected = Number(request.body?.expected)
    if (!Number.isInteger(expected) || expected < 1) throw new HttpError(400, 'bad_request', 'confirm the number of runs to retry')
    const { requeued, seconds } = await repository.retryRuns(retryFilter(request.body ?? {}), Math.min(expected, BULK_LIMIT), config.bulkRetryPerSecond, { by: operator(request), note: note(request.body) })
    request.log.info({ requeued, per_second: config.bulkRetryPerSecond }, 'console bulk retry')
    return await reply.code(303).header('location', `/console/runs?queued=${requeued}&over=${Math.ceil(seconds)}`).send()
  })

  fastify.get<{ Params: { exceptionId: string }, Querystring: { copy?: string } }>('/exceptions/:exceptionId', async (request, reply) => {
    const exceptionId = uuid(request.params.exceptionId)
    const { exceptions } = await repository.listExceptionsOf(exceptionId)
    const exception = exceptions[0] as (ExceptionRow & { run_id: string, provider: string, event_type: string | null }) | undefined
    if (exception === undefined) return page(reply, 'No such exception', html`<p>No exception ${exceptionId}.</p>`, 404)
    const run = await repository.getRun(exception.run_id)
    // One copy compared at a time: the one asked for, else the first kept.
    const copies = (exception.details as { copies?: Copy[] } | null)?.copies ?? []
    const chosen = copies.find(c => c.body_sha256 === request.query.copy) ?? copies[0]
    const whole = chosen === undefined ? undefined : await repository.exceptionCopy(exceptionId, chosen.body_sha256)
    const compare = chosen === undefined || whole === undefined
      ? undefined
      : { stored: JSON.stringify(run?.payload ?? null, null, 2), copy: chosen, whole: JSON.stringify(whole.payload ?? { payload_erased: true }, null, 2) }
    return page(reply, `Exception: ${exception.reason}`, html`<p>Run <a href="/console/runs/${exception.run_id}">${run?.idempotency_key ?? exception.run_id}</a> · ${exception.provider} · ${exception.event_type}</p>
${exceptionBlock(reply, exception, compare)}`)
  })

  fastify.get('/refusals', async (_request, reply) => {
    const rows = await repository.refusals(24)
    return page(reply, 'Refusals, last 24 hours', html`<p>Deliveries that made no run, never their bodies: a provider refused for
<code>no_matching_signature</code> since a deploy usually means its secret was rotated.</p>
<table><thead><tr><th>provider</th><th>what</th><th>reason</th><th>client</th><th>count</th><th>last</th></tr></thead><tbody>
${rows.map(r => html`<tr><td>${r.provider}</td><td>${r.type}</td><td>${r.reason}</td><td>${r.client_ip}</td><td>${r.count}</td><td>${when(r.last)}</td></tr>`)}
</tbody></table>`)
  })
}

/** Deliveries per bucket over the period: new runs by provider, then duplicates, conflicts and refusals; an inline SVG (no script). */
function bucketChart (points: Array<{ bucket: number, series: string, count: number }>, buckets: number, start: string): Html {
  const width = 720
  const height = 160
  const outcomes: Record<string, string> = { refused: '#b3261e', duplicate: '#8a8f98', 'conflict or replay': '#c77700' }
  const series = [...new Set(points.map(p => p.series))].sort((a, b) => (a in outcomes ? 1 : 0) - (b in outcomes ? 1 : 0) || a.localeCompare(b))
  if (series.length === 0) return html`<p>No delivery in this period.</p>`
  const max = Math.max(1, ...points.map(p => p.count))
  const colors = ['#2f6fde', '#1b7a3a', '#9a4fd0', '#de8a2f', '#2fa3a3', '#5a6b7d']
  const last = buckets - 1
  const x = (bucket: number): number => 40 + (width - 50) * (last - Math.min(last, bucket)) / last
  const y = (count: number): number => height - 20 - (height - 40) * count / max
  const lines = series.map((name, i) => {
    const byBucket = new Map(points.filter(p => p.series === name).map(p => [p.bucket, p.count]))
    const color = outcomes[name] ?? colors[i % colors.length]
    const path = Array.from({ length: buckets }, (_, b) => `${x(b).toFixed(1)},${y(byBucket.get(b) ?? 0).toFixed(1)}`).join(' ')
    return html`<polyline fill="none" stroke="${color}" stroke-width="2" points="${path}"/><text x="${width - 150}" y="${16 + i * 14}" font-size="12" fill="${color}">${name}</text>`
  })
  return html`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="deliveries over time">
<line x1="40" y1="${height - 20}" x2="${width - 10}" y2="${height - 20}" stroke="#999"/><text x="4" y="${y(max) + 4}" font-size="11">${max}</text><text x="4" y="${height - 16}" font-size="11">0</text>
<text x="40" y="${height - 4}" font-size="11">${start}</text><text x="${width - 40}" y="${height - 4}" font-size="11">now</text>${lines}</svg>`
}

function nonEmpty (value: string | undefined): string | undefined {
  const trimmed = value?.trim()
  return trimmed === undefined || trimmed === '' ? undefined : trimmed.slice(0, 500)
}

/** A time from a datetime-local field (read as UTC) or an ISO string; undefined if it is neither. */
function instant (value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined
  const date = new Date(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value) ? `${value}Z` : value)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

function uuid (value: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) throw new HttpError(404, 'not_found', 'no such run or exception')
  return value.toLowerCase()
}

function note (body: { note?: string } | undefined): string | undefined {
  return nonEmpty(body?.note)?.slice(0, 2000)
}
