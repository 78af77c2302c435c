// ESLint: typescript-eslint's recommended rules on the TypeScript sources; formatting is Prettier's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'runs/', '.tmp/', '.gpu/', 'native/generated/', 'src/torch/generated/', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Tests and a few loaders use require() for optional or lazily loaded modules.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    files: ['src/**/*.ts', 'bench/**/*.ts'],
    ignores: ['src/util/signal-child.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.type='MemberExpression'][callee.property.name='kill']:not([callee.object.name='process'])",
          message:
            "signal a child with signalChild (src/util/signal-child.ts): child.kill() on a child whose spawn failed signals pid 0, this process's whole group",
        },
      ],
    },
  },
);
