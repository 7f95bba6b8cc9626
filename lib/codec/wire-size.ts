/**
 * How many bytes a session or an ownership entry takes in a message, estimated without encoding it:
 * what batches and state-transfer pages are sized by, so that each fits one broker message.
 */
import { attributeBytes, type SessionState } from '../session/state.ts';

/** Room a session state needs besides its attribute data: key, times, stamps and JSON punctuation. */
const STATE_OVERHEAD_BYTES = 200;

/** Bytes one ownership entry takes on the wire (key, two node ids, a stamp), rounded up. */
export const ENTRY_WIRE_BYTES = 100;

/** The estimated wire size of one session state: its attribute data plus a fixed overhead. */
export function sessionWireBytes(state: SessionState): number {
  return STATE_OVERHEAD_BYTES + attributeBytes(state);
}
