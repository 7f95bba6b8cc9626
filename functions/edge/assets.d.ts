/** Text assets the edge build inlines (esbuild loader `text`, scripts/build-edge.mjs). */
declare module '*.html' {
  const text: string;
  export default text;
}
