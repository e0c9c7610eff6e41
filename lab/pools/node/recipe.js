// Runs a printed recipe as it stands: the text `idle_drop_exporter` printed (recipe_text) is
// evaluated as a JavaScript expression with the library's constructor and the application's own
// options (the job's dsn and pool) in scope, so a line that does not parse or run as printed
// fails its cell. The constructor in scope is the real one, wrapped only to see the options the
// text passed, which must carry every setting of the job's `recipe` (the two are printed from the
// same model, and must not drift apart).
'use strict'

function evaluate(text, scope) {
  const names = Object.keys(scope)
  let fn
  try {
    fn = new Function(...names, `'use strict'; return (${text})`)
  } catch (err) {
    throw new Error(`recipe_text does not parse as JavaScript: ${err.message}`)
  }
  return fn(...names.map((n) => scope[n]))
}

// Whether `got` holds every value of `want` (objects: key by key; anything else: equal).
function carries(got, want) {
  if (want !== null && typeof want === 'object') {
    return got !== null && typeof got === 'object' && Object.keys(want).every((k) => carries(got[k], want[k]))
  }
  return got === want
}

// Checks the options the text passed against the job's recipe, and the recipe's keys against the
// library's own option names (so a misspelt key cannot pass by being ignored).
function check(recipe, passed, known, library) {
  for (const [key, value] of Object.entries(recipe)) {
    if (!known.has(key)) throw new Error(`unknown recipe key for ${library}: ${key}`)
    if (!passed || !carries(passed[key], value)) {
      const got = passed ? JSON.stringify(passed[key]) : 'nothing'
      throw new Error(`recipe_text sets ${key} to ${got}, the recipe to ${JSON.stringify(value)}`)
    }
  }
}

// Builds the library's object from the job: the recipe's printed text with `scope`, or, for the
// defaults, `plain()`. `wrap(capture)` returns the scope whose constructor calls capture(options).
function build(job, library, known, wrap, plain) {
  if (!job.recipe) return plain()
  if (typeof job.recipe_text !== 'string') throw new Error('a recipe without recipe_text: the harness runs the printed text')
  let passed = null
  const built = evaluate(job.recipe_text, wrap((options) => { passed = options }))
  check(job.recipe, passed, known, library)
  return built
}

module.exports = { build, evaluate, carries }
