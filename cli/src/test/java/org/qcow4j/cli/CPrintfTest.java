package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link CPrintf} against exact decimal arithmetic ({@code BigDecimal} of the double's binary value, half to even,
 * which is how glibc rounds), over seeded random values of every magnitude, and on cases Java's formatter gets wrong.
 * {@link SizesTest} and the qemu-io and check tests hold its output against QEMU's tools.
 */
class CPrintfTest {
    private static final long SEED = 20261202L;

    @Test
    void fixedAsGlibc() {
        assertEquals("12.12", CPrintf.fixed(12.125, 2)); // a tie: to even (Java's formatter: 12.13)
        assertEquals("0.12", CPrintf.fixed(0.125, 2));
        assertEquals("2.67", CPrintf.fixed(2.675, 2)); // 2.67499999... in binary
        assertEquals("100.00", CPrintf.fixed(100, 2));
        assertEquals("0.00", CPrintf.fixed(1e-300, 2));
        assertEquals("0.00", CPrintf.fixed(Double.MIN_VALUE, 2));
        assertEquals("-0.00", CPrintf.fixed(-0.001, 2)); // glibc keeps the sign
        assertEquals("-1.50", CPrintf.fixed(-1.5, 2));
        assertEquals("2", CPrintf.fixed(2.5, 0)); // to even
        assertEquals("4", CPrintf.fixed(3.5, 0));
        assertEquals("1.000000", CPrintf.fixed(1, 6));
        assertEquals("inf", CPrintf.fixed(Double.POSITIVE_INFINITY, 2));
        assertEquals("nan", CPrintf.fixed(Double.NaN, 3));
        assertEquals(new BigDecimal(1e300).setScale(2).toPlainString(), CPrintf.fixed(1e300, 2)); // beyond a long
        SplittableRandom random = new SplittableRandom(SEED);
        for (int n = 0; n < 300_000; n++) {
            double v = randomDouble(random);
            int decimals = random.nextInt(7);
            String want = new BigDecimal(v).setScale(decimals, RoundingMode.HALF_EVEN).toPlainString();
            assertEquals(want, CPrintf.fixed(v, decimals), "seed " + SEED + ": %." + decimals + "f of " + v);
        }
    }

    @Test
    void g3AsGlibc() {
        assertEquals("0", CPrintf.g3(0));
        assertEquals("1e+03", CPrintf.g3(999.5)); // a tie, to even: 1000, which %g prints in exponent form
        assertEquals("999", CPrintf.g3(999.4999));
        assertEquals("100", CPrintf.g3(100.5));
        assertEquals("102", CPrintf.g3(101.5));
        assertEquals("0.977", CPrintf.g3(0.9765625));
        assertEquals("1", CPrintf.g3(0.9995));
        assertEquals("1.5", CPrintf.g3(1.5));
        assertEquals("10", CPrintf.g3(9.9951));
        SplittableRandom random = new SplittableRandom(SEED);
        for (int n = 0; n < 300_000; n++) {
            double v = 0.1 + random.nextDouble() * 999.9;
            BigDecimal rounded = new BigDecimal(v).round(new MathContext(3, RoundingMode.HALF_EVEN));
            String want = rounded.compareTo(BigDecimal.valueOf(1000)) >= 0 ? "1e+03"
                    : rounded.stripTrailingZeros().toPlainString();
            assertEquals(want, CPrintf.g3(v), "seed " + SEED + ": %0.3g of " + v);
        }
    }

    /** Non-negative, from subnormal to 1e18, with many exact ties (short binary fractions). */
    private static double randomDouble(SplittableRandom random) {
        switch (random.nextInt(4)) {
            case 0:
                return random.nextLong(1 << 20) / (double) (1 << random.nextInt(1, 12)); // ties at every scale
            case 1:
                return random.nextDouble() * Math.pow(10, random.nextInt(-8, 18));
            case 2:
                return Double.longBitsToDouble(random.nextLong(0x7fefffffffffffffL)) % 1e6;
            default:
                return random.nextLong(1_000_000_000_000L) / 1000.0;
        }
    }
}
