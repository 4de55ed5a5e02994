/** models/demo-stories and the greedy stories its README gives (a float64 forward pass on its weights). */
export const DEMO = 'models/demo-stories';

export const CAT_PROMPT = 'Tell me a story about a cat.';
export const CAT =
  'Once upon a time, there was a curious cow named Lucy. Lucy loved to play in the farm. One day, Lucy found a blue box. Lucy felt sad and smiled. Lucy asked the frog, "Do you want to play with my box?" Then a big wind took the box away. Lucy learned that it is good to share. That night, Lucy slept with the box and had happy dreams.';

export const LILY_PROMPT = 'Tell me a story about Lily.';
export const LILY =
  'Once upon a time, there was a big dog named Lily. Lily loved to play in the farm. One day, Lily found a blue box. Lily felt sad and smiled. Lily and the fox played with the box all day. Then a big wind took the box away. Lily learned that it is good to share. That night, Lily slept with the box and had happy dreams.';
