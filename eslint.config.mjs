// Type-aware lint: the @pulumi/aws type definitions mark deprecated resources and arguments, and
// no-deprecated turns each use of one into an error.
import tseslint from "typescript-eslint";

export default tseslint.config(
    { ignores: ["node_modules/**", "bin/**", ".cache/**", "test/harness/cli-run.js", "test/fixtures/**", "eslint.config.mjs"] },
    ...tseslint.configs.recommended,
    {
        languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
        rules: {
            "@typescript-eslint/no-deprecated": "error",
            "@typescript-eslint/no-explicit-any": "off",
            "@typescript-eslint/no-non-null-assertion": "off",
        },
    },
);
