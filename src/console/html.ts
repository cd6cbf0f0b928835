/**
 * Server-rendered pages without a template engine: `html` escapes every value it is given (payloads,
 * headers and errors are attacker-influenced), unless the value is itself `html`. No script runs in
 * the console: its Content-Security-Policy allows none.
 */
export class Html {
  constructor (readonly text: string) {}
  toString (): string { return this.text }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml (value: string): string {
  return value.replace(/[&<>"']/g, c => ESCAPES[c])
}

function render (value: unknown): string {
  if (value instanceof Html) return value.text
  if (Array.isArray(value)) return value.map(render).join('')
  if (value === null || value === undefined || value === false) return ''
  return escapeHtml(String(value))
}

export function html (strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]
  values.forEach((value, i) => { out += render(value) + strings[i + 1] })
  return new Html(out)
}

export const STYLESHEET = `
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f6f7f9; }
header { background: #1d2733; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.2rem; align-items: center; }
header a { color: #dfe7f1; text-decoration: none; } header a:hover, header a:focus { text-decoration: underline; }
header form { margin-left: auto; }
main { padding: 1rem 1.2rem; max-width: 1300px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { font-weight: 600; background: #eef1f4; }
pre { background: #fff; border: 1px solid #e3e6ea; padding: .6rem; overflow: auto; max-height: 32rem; margin: 0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; } .card { background: #fff; border: 1px solid #e3e6ea; padding: .6rem 1rem; min-width: 11rem; }
.card b { display: block; font-size: 1.6rem; }
.status-failed, .status-exception, .flash-error { color: #b3261e; } .status-completed { color: #1b7a3a; }
.flash { background: #e7f4ea; border: 1px solid #b6dfc0; padding: .5rem .8rem; } .flash-error { background: #fbeaea; border-color: #efbdbd; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; } .diff { background: #fff3c4; }
form.inline { display: inline; } label { margin-right: .6rem; }
input, select, button, textarea { font: inherit; } button { cursor: pointer; }
:focus-visible { outline: 2px solid #2f6fde; outline-offset: 2px; }
`
