import { mintToken, ROLES, type Role } from '../api/tokens.ts';

/** `npm run mint-token -- <name> <role>`: prints a new token once, and the API_TOKENS entry to add. */
const [name, role = 'operator'] = process.argv.slice(2);
if (!name || !(ROLES as readonly string[]).includes(role)) {
  console.error(`usage: npm run mint-token -- <name> <${ROLES.join('|')}>`);
  process.exit(2);
}
const { token, entry } = mintToken(name, role as Role);
console.log(`token (shown once; give it to the client):\n  ${token}\nadd to API_TOKENS (comma-separated):\n  ${entry}`);
