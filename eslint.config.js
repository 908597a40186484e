import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', 'dist/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    // Plain-JavaScript build tools (they run before anything is compiled), in Node.
    files: ['scripts/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    // The `rotator` bin shim (plain JavaScript), in Node.
    files: ['bin/**/*.js'],
    languageOptions: { globals: { URL: 'readonly', process: 'readonly', console: 'readonly' } },
  },
  {
    // The dashboard's browser modules (served as they are, no build step).
    files: ['src/dashboard/public/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'history', 'fetch', 'EventSource', 'URLSearchParams', 'URL', 'FormData', 'Event', 'Blob', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout', 'performance', 'requestAnimationFrame'].map((g) => [g, 'readonly']),
      ),
    },
  },
  {
    // Only src/config.ts reads the environment (STYLE.md); tests, emulators and scripts are tools.
    files: ['src/**/*.ts', 'workers/**/*.ts', 'providers/**/*.ts'],
    // src/cli/rotator.ts: the CLI is a client of the API, not the service; its entry point reads
    // the CLI's own variables (ROTATOR_URL, ROTATOR_TOKEN…) once and passes them down.
    ignores: ['src/config.ts', 'src/demo.ts', 'src/cli/rotator.ts'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read configuration in src/config.ts only.' }],
    },
  },
);
