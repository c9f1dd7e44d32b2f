// UsageError: bad flags or arguments. main.ts prints its message alone (no stack) and exits 2, as
// a command-line tool does for a usage mistake. Its own module so that the subcommands main.ts
// loads can throw it without importing main.ts (which runs the CLI when imported) — that import
// was a cycle (issue 14).
export class UsageError extends Error {}
