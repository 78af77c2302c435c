// A built-in 5×7 bitmap font for ASCII 32..126 (other text is transliterated by fontText), drawn straight into RGB buffers: labels need no
// system fonts, no text shaping library and no network. Each glyph is 7 rows of 5 bits; a row is
// one base-32 digit (most significant bit = leftmost pixel).
const DIGITS = '0123456789abcdefghijklmnopqrstuv';
const GLYPHS =
  '00000004444404aaa0000aavavaa4fke5u4op248j3cik8lid448000024888428422248' +
  '04lel40044v4400000c48000v00000000cc01248g0ehjlphe4c4444eeh1248vv2421he' +
  '26aiv22vgu11he68guhhev124888ehhehheehhf12c0cc0cc00cc0c48248g84200v0v00' +
  '8421248eh12404eh1dlleehhvhhhuhhuhhuehggghesihhhisvgguggvvggugggehgnhhf' +
  'hhhvhhhe44444e72222ichikokihggggggvhrllhhhhhpljhhehhhhheuhhugggehhhlid' +
  'uhhukihfgge11uv444444hhhhhhehhhhha4hhhlllahha4ahhhha4444v1248gve88888e' +
  '0g84210e22222e4ah0000000000v842000000e1fhfggmphhu00egghe11djhhf00ehvge' +
  '698s8880fhhf1eggmphhh40c444e20622icggikokic44444e00qllhh00mphhh00ehhhe' +
  '00uhugg00djf1100mpggg00ege1u88s889600hhhjd00hhha400hhlla00ha4ah00hhf1e' +
  '00v248v244844244444448442448008l200';

/** Lower-case letters with descenders: 9 rows (x-height as the others, 2 rows below the baseline). */
const DESCENDERS: Record<string, string> = { g: '00fhhhf1e', j: '2062222ic', p: '00uhhhugg', q: '00fhhhf11', y: '00hhhhf1e' };

/** Columns of a glyph of the built-in font, in font pixels. */
export const GLYPH_W = 5;
/** Rows above and on the baseline. */
export const GLYPH_H = 7;
/** Rows of a line including descenders. */
export const LINE_H = 9;
/** Horizontal advance per character in font pixels (glyph + 1 column of spacing). */
export const ADVANCE = GLYPH_W + 1;

/** What is drawn for a character the font cannot show, even without its accents: a hollow box (not '?', which a name may hold). */
export const NO_GLYPH = '\u25af';
const BOX = 'vhhhhhv';

/**
 * Text as the font can draw it: letters with accents as their base letters (NFD without the combining
 * marks: ü → u, ç → c), and every other character outside ASCII 32..126 one NO_GLYPH (per code point:
 * 猫 and 😀 are one box each).
 */
export function fontText(text: string): string {
  return Array.from(text.normalize('NFC'), (ch) => {
    const base = ch.normalize('NFD').replace(/\p{M}/gu, '');
    return /^[\x20-\x7e]*$/.test(base) ? base : NO_GLYPH;
  }).join('');
}

/** The row bitmasks of a character (7, or 9 with a descender); outside ASCII 32..126 the NO_GLYPH box. */
export function glyphRows(ch: string): number[] {
  const d = DESCENDERS[ch];
  if (d) return Array.from(d, (c) => DIGITS.indexOf(c));
  const code = ch.charCodeAt(0);
  if (!(code >= 32 && code <= 126)) return Array.from(BOX, (c) => DIGITS.indexOf(c));
  const at = (code - 32) * GLYPH_H;
  const rows: number[] = [];
  for (let r = 0; r < GLYPH_H; r++) rows.push(DIGITS.indexOf(GLYPHS[at + r]));
  return rows;
}

/** Width in pixels of a string at a scale (no trailing spacing). */
export function textWidth(text: string, scale = 1): number {
  const n = fontText(text).length;
  return n === 0 ? 0 : (n * ADVANCE - 1) * scale;
}

/** Height in pixels of one line (with descenders) at a scale. */
export function textHeight(scale = 1): number {
  return LINE_H * scale;
}
