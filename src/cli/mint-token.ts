import { mintToken, TOKEN_ROLES, TOKEN_NAME, type Role } from '../api/tokens.ts';

/**
 * `npm run mint-token -- <name> <viewer|operator|admin|consumer>`: prints a new token once, and the
 * API_TOKENS entry to add. Both arguments are required (no default role: an operator token is
 * not what every caller should get); anything wrong is one line and exit 2.
 */
const USAGE = `npm run mint-token -- <name> <${TOKEN_ROLES.join('|')}>`;
const [name, role, ...extra] = process.argv.slice(2);
const problem = !name
  ? `a token name and a role are required: ${USAGE}`
  : !TOKEN_NAME.test(name)
    ? `token name "${name}" is not allowed: use 1–64 letters, digits, _ . or - (${USAGE})`
    : !role
      ? `a role is required: ${USAGE}`
      : !(TOKEN_ROLES as readonly string[]).includes(role)
        ? `role "${role}" is not one of ${TOKEN_ROLES.join(', ')} (${USAGE})`
        : extra.length
          ? `unexpected arguments after the role: ${extra.join(' ')} (${USAGE})`
          : undefined;
if (problem) {
  console.error(`mint-token: ${problem}`);
  process.exit(2);
}
const { token, entry } = mintToken(name!, role as Role);
console.log(`token (shown once; give it to the client):\n  ${token}\nadd to API_TOKENS (comma-separated):\n  ${entry}`);
