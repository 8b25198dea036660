;; SHA-384 (FIPS 180-4: SHA-512's compression with SHA-384's initial value, 48-byte digest),
;; in WebAssembly text, for igvmgen. scripts/build_wasm.ts compiles it with `wat2wasm` (Debian's
;; wabt) into lib/hash/sha384_wasm.ts; tests/sha384_test.ts checks that the two agree.
;;
;; Two compressions: one block at a time on i64 locals (any message), and two 4 KiB pages at
;; once in the two i64 lanes of v128 locals (about 1.5 times the speed per page). Each does
;; eight rounds per loop pass, so that the roles of a..h come back to the same locals.
;;
;; Memory map: the module keeps the first 8 KiB; callers use memory from 8192 (export "heap").
;;      0  K, the 80 round constants (i64, little-endian)
;;    640  W, the message schedule of the block being compressed
;;   1280  H, the hash state
;;   1344  PAD, 256 bytes where the end of a message is padded
;;   1600  IV, SHA-384's initial hash value
;;   1664  the last block of every 4096-byte message: 0x80, zeros, the length 32768 (bits)
;;   2048  K2, each round constant in both lanes (built by $setup)
;;   3328  W2, the message schedules of two blocks, lane by lane
;;   4608  H2, two hash states, lane by lane
;; Message words are big-endian: i8x16.shuffle byte-swaps two words at a time.
(module
  (memory (export "memory") 1)
  (global (export "heap") i32 (i32.const 8192))
  (data (i32.const 0)
    "\22\ae\28\d7\98\2f\8a\42\cd\65\ef\23\91\44\37\71"
    "\2f\3b\4d\ec\cf\fb\c0\b5\bc\db\89\81\a5\db\b5\e9"
    "\38\b5\48\f3\5b\c2\56\39\19\d0\05\b6\f1\11\f1\59"
    "\9b\4f\19\af\a4\82\3f\92\18\81\6d\da\d5\5e\1c\ab"
    "\42\02\03\a3\98\aa\07\d8\be\6f\70\45\01\5b\83\12"
    "\8c\b2\e4\4e\be\85\31\24\e2\b4\ff\d5\c3\7d\0c\55"
    "\6f\89\7b\f2\74\5d\be\72\b1\96\16\3b\fe\b1\de\80"
    "\35\12\c7\25\a7\06\dc\9b\94\26\69\cf\74\f1\9b\c1"
    "\d2\4a\f1\9e\c1\69\9b\e4\e3\25\4f\38\86\47\be\ef"
    "\b5\d5\8c\8b\c6\9d\c1\0f\65\9c\ac\77\cc\a1\0c\24"
    "\75\02\2b\59\6f\2c\e9\2d\83\e4\a6\6e\aa\84\74\4a"
    "\d4\fb\41\bd\dc\a9\b0\5c\b5\53\11\83\da\88\f9\76"
    "\ab\df\66\ee\52\51\3e\98\10\32\b4\2d\6d\c6\31\a8"
    "\3f\21\fb\98\c8\27\03\b0\e4\0e\ef\be\c7\7f\59\bf"
    "\c2\8f\a8\3d\f3\0b\e0\c6\25\a7\0a\93\47\91\a7\d5"
    "\6f\82\03\e0\51\63\ca\06\70\6e\0e\0a\67\29\29\14"
    "\fc\2f\d2\46\85\0a\b7\27\26\c9\26\5c\38\21\1b\2e"
    "\ed\2a\c4\5a\fc\6d\2c\4d\df\b3\95\9d\13\0d\38\53"
    "\de\63\af\8b\54\73\0a\65\a8\b2\77\3c\bb\0a\6a\76"
    "\e6\ae\ed\47\2e\c9\c2\81\3b\35\82\14\85\2c\72\92"
    "\64\03\f1\4c\a1\e8\bf\a2\01\30\42\bc\4b\66\1a\a8"
    "\91\97\f8\d0\70\8b\4b\c2\30\be\54\06\a3\51\6c\c7"
    "\18\52\ef\d6\19\e8\92\d1\10\a9\65\55\24\06\99\d6"
    "\2a\20\71\57\85\35\0e\f4\b8\d1\bb\32\70\a0\6a\10"
    "\c8\d0\d2\b8\16\c1\a4\19\53\ab\41\51\08\6c\37\1e"
    "\99\eb\8e\df\4c\77\48\27\a8\48\9b\e1\b5\bc\b0\34"
    "\63\5a\c9\c5\b3\0c\1c\39\cb\8a\41\e3\4a\aa\d8\4e"
    "\73\e3\63\77\4f\ca\9c\5b\a3\b8\b2\d6\f3\6f\2e\68"
    "\fc\b2\ef\5d\ee\82\8f\74\60\2f\17\43\6f\63\a5\78"
    "\72\ab\f0\a1\14\78\c8\84\ec\39\64\1a\08\02\c7\8c"
    "\28\1e\63\23\fa\ff\be\90\e9\bd\82\de\eb\6c\50\a4"
    "\15\79\c6\b2\f7\a3\f9\be\2b\53\72\e3\f2\78\71\c6"
    "\9c\61\26\ea\ce\3e\27\ca\07\c2\c0\21\c7\b8\86\d1"
    "\1e\eb\e0\cd\d6\7d\da\ea\78\d1\6e\ee\7f\4f\7d\f5"
    "\ba\6f\17\72\aa\67\f0\06\a6\98\c8\a2\c5\7d\63\0a"
    "\ae\0d\f9\be\04\98\3f\11\1b\47\1c\13\35\0b\71\1b"
    "\84\7d\04\23\f5\77\db\28\93\24\c7\40\7b\ab\ca\32"
    "\bc\be\c9\15\0a\be\9e\3c\4c\0d\10\9c\c4\67\1d\43"
    "\b6\42\3e\cb\be\d4\c5\4c\2a\7e\65\fc\9c\29\7f\59"
    "\ec\fa\d6\3a\ab\6f\cb\5f\17\58\47\4a\8c\19\44\6c")
  (data (i32.const 1600)
    "\d8\9e\05\c1\5d\9d\bb\cb\07\d5\7c\36\2a\29\9a\62"
    "\17\dd\70\30\5a\01\59\91\39\59\0e\f7\d8\ec\2f\15"
    "\31\0b\c0\ff\67\26\33\67\11\15\58\68\87\4a\b4\8e"
    "\a7\8f\f9\64\0d\2e\0c\db\a4\4f\fa\be\1d\48\b5\47")
  (data (i32.const 1664) "\80")
  (data (i32.const 1790) "\80")

  (func $setup
    (local $k i32)
    (loop $next
      (v128.store offset=2048 (i32.shl (local.get $k) (i32.const 1)) (i64x2.splat (i64.load (local.get $k))))
      (br_if $next (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 8))) (i32.const 640)))))
  (start $setup)

  ;; Starts a message: H = IV.
  (func $init (export "init")
    (memory.copy (i32.const 1280) (i32.const 1600) (i32.const 64)))

  ;; Compresses the 128-byte block at $p into H.
  (func $compress (param $p i32)
    (local $a i64) (local $b i64) (local $c i64) (local $d i64)
    (local $e i64) (local $f i64) (local $g i64) (local $h i64)
    (local $t1 i64) (local $x i64) (local $y i64) (local $k i32)
    ;; W[0..15]: the block's words.
    (v128.store offset=640 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=0 (local.get $p)) (v128.load offset=0 (local.get $p))))
    (v128.store offset=656 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=16 (local.get $p)) (v128.load offset=16 (local.get $p))))
    (v128.store offset=672 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=32 (local.get $p)) (v128.load offset=32 (local.get $p))))
    (v128.store offset=688 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=48 (local.get $p)) (v128.load offset=48 (local.get $p))))
    (v128.store offset=704 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=64 (local.get $p)) (v128.load offset=64 (local.get $p))))
    (v128.store offset=720 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=80 (local.get $p)) (v128.load offset=80 (local.get $p))))
    (v128.store offset=736 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=96 (local.get $p)) (v128.load offset=96 (local.get $p))))
    (v128.store offset=752 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=112 (local.get $p)) (v128.load offset=112 (local.get $p))))
    ;; W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16] for t = 16..79; $k = 8 * (t - 16).
    (local.set $k (i32.const 0))
    (loop $schedule
      (local.set $x (i64.load offset=752 (local.get $k)))
      (local.set $y (i64.load offset=648 (local.get $k)))
      (i64.store offset=768 (local.get $k)
        (i64.add
          (i64.add
            (i64.xor (i64.xor (i64.rotr (local.get $x) (i64.const 19)) (i64.rotr (local.get $x) (i64.const 61)))
                     (i64.shr_u (local.get $x) (i64.const 6)))
            (i64.load offset=712 (local.get $k)))
          (i64.add
            (i64.xor (i64.xor (i64.rotr (local.get $y) (i64.const 1)) (i64.rotr (local.get $y) (i64.const 8)))
                     (i64.shr_u (local.get $y) (i64.const 7)))
            (i64.load offset=640 (local.get $k)))))
      (br_if $schedule (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 8))) (i32.const 512))))
    (local.set $a (i64.load offset=1280 (i32.const 0)))
    (local.set $b (i64.load offset=1288 (i32.const 0)))
    (local.set $c (i64.load offset=1296 (i32.const 0)))
    (local.set $d (i64.load offset=1304 (i32.const 0)))
    (local.set $e (i64.load offset=1312 (i32.const 0)))
    (local.set $f (i64.load offset=1320 (i32.const 0)))
    (local.set $g (i64.load offset=1328 (i32.const 0)))
    (local.set $h (i64.load offset=1336 (i32.const 0)))
    ;; The 80 rounds; $k = 8 * t indexes K and W.
    (local.set $k (i32.const 0))
    (loop $rounds
      ;; round t+0: a..h are $a $b $c $d $e $f $g $h
      (local.set $t1 (i64.add
        (i64.add (local.get $h) (i64.add (i64.load offset=0 (local.get $k)) (i64.load offset=640 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $e) (i64.const 14)) (i64.rotr (local.get $e) (i64.const 18)))
                   (i64.rotr (local.get $e) (i64.const 41)))
          (i64.xor (local.get $g) (i64.and (local.get $e) (i64.xor (local.get $f) (local.get $g)))))))
      (local.set $d (i64.add (local.get $d) (local.get $t1)))
      (local.set $h (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $a) (i64.const 28)) (i64.rotr (local.get $a) (i64.const 34)))
                 (i64.rotr (local.get $a) (i64.const 39)))
        (i64.or (i64.and (local.get $a) (local.get $b)) (i64.and (local.get $c) (i64.or (local.get $a) (local.get $b)))))))
      ;; round t+1: a..h are $h $a $b $c $d $e $f $g
      (local.set $t1 (i64.add
        (i64.add (local.get $g) (i64.add (i64.load offset=8 (local.get $k)) (i64.load offset=648 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $d) (i64.const 14)) (i64.rotr (local.get $d) (i64.const 18)))
                   (i64.rotr (local.get $d) (i64.const 41)))
          (i64.xor (local.get $f) (i64.and (local.get $d) (i64.xor (local.get $e) (local.get $f)))))))
      (local.set $c (i64.add (local.get $c) (local.get $t1)))
      (local.set $g (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $h) (i64.const 28)) (i64.rotr (local.get $h) (i64.const 34)))
                 (i64.rotr (local.get $h) (i64.const 39)))
        (i64.or (i64.and (local.get $h) (local.get $a)) (i64.and (local.get $b) (i64.or (local.get $h) (local.get $a)))))))
      ;; round t+2: a..h are $g $h $a $b $c $d $e $f
      (local.set $t1 (i64.add
        (i64.add (local.get $f) (i64.add (i64.load offset=16 (local.get $k)) (i64.load offset=656 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $c) (i64.const 14)) (i64.rotr (local.get $c) (i64.const 18)))
                   (i64.rotr (local.get $c) (i64.const 41)))
          (i64.xor (local.get $e) (i64.and (local.get $c) (i64.xor (local.get $d) (local.get $e)))))))
      (local.set $b (i64.add (local.get $b) (local.get $t1)))
      (local.set $f (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $g) (i64.const 28)) (i64.rotr (local.get $g) (i64.const 34)))
                 (i64.rotr (local.get $g) (i64.const 39)))
        (i64.or (i64.and (local.get $g) (local.get $h)) (i64.and (local.get $a) (i64.or (local.get $g) (local.get $h)))))))
      ;; round t+3: a..h are $f $g $h $a $b $c $d $e
      (local.set $t1 (i64.add
        (i64.add (local.get $e) (i64.add (i64.load offset=24 (local.get $k)) (i64.load offset=664 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $b) (i64.const 14)) (i64.rotr (local.get $b) (i64.const 18)))
                   (i64.rotr (local.get $b) (i64.const 41)))
          (i64.xor (local.get $d) (i64.and (local.get $b) (i64.xor (local.get $c) (local.get $d)))))))
      (local.set $a (i64.add (local.get $a) (local.get $t1)))
      (local.set $e (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $f) (i64.const 28)) (i64.rotr (local.get $f) (i64.const 34)))
                 (i64.rotr (local.get $f) (i64.const 39)))
        (i64.or (i64.and (local.get $f) (local.get $g)) (i64.and (local.get $h) (i64.or (local.get $f) (local.get $g)))))))
      ;; round t+4: a..h are $e $f $g $h $a $b $c $d
      (local.set $t1 (i64.add
        (i64.add (local.get $d) (i64.add (i64.load offset=32 (local.get $k)) (i64.load offset=672 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $a) (i64.const 14)) (i64.rotr (local.get $a) (i64.const 18)))
                   (i64.rotr (local.get $a) (i64.const 41)))
          (i64.xor (local.get $c) (i64.and (local.get $a) (i64.xor (local.get $b) (local.get $c)))))))
      (local.set $h (i64.add (local.get $h) (local.get $t1)))
      (local.set $d (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $e) (i64.const 28)) (i64.rotr (local.get $e) (i64.const 34)))
                 (i64.rotr (local.get $e) (i64.const 39)))
        (i64.or (i64.and (local.get $e) (local.get $f)) (i64.and (local.get $g) (i64.or (local.get $e) (local.get $f)))))))
      ;; round t+5: a..h are $d $e $f $g $h $a $b $c
      (local.set $t1 (i64.add
        (i64.add (local.get $c) (i64.add (i64.load offset=40 (local.get $k)) (i64.load offset=680 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $h) (i64.const 14)) (i64.rotr (local.get $h) (i64.const 18)))
                   (i64.rotr (local.get $h) (i64.const 41)))
          (i64.xor (local.get $b) (i64.and (local.get $h) (i64.xor (local.get $a) (local.get $b)))))))
      (local.set $g (i64.add (local.get $g) (local.get $t1)))
      (local.set $c (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $d) (i64.const 28)) (i64.rotr (local.get $d) (i64.const 34)))
                 (i64.rotr (local.get $d) (i64.const 39)))
        (i64.or (i64.and (local.get $d) (local.get $e)) (i64.and (local.get $f) (i64.or (local.get $d) (local.get $e)))))))
      ;; round t+6: a..h are $c $d $e $f $g $h $a $b
      (local.set $t1 (i64.add
        (i64.add (local.get $b) (i64.add (i64.load offset=48 (local.get $k)) (i64.load offset=688 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $g) (i64.const 14)) (i64.rotr (local.get $g) (i64.const 18)))
                   (i64.rotr (local.get $g) (i64.const 41)))
          (i64.xor (local.get $a) (i64.and (local.get $g) (i64.xor (local.get $h) (local.get $a)))))))
      (local.set $f (i64.add (local.get $f) (local.get $t1)))
      (local.set $b (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $c) (i64.const 28)) (i64.rotr (local.get $c) (i64.const 34)))
                 (i64.rotr (local.get $c) (i64.const 39)))
        (i64.or (i64.and (local.get $c) (local.get $d)) (i64.and (local.get $e) (i64.or (local.get $c) (local.get $d)))))))
      ;; round t+7: a..h are $b $c $d $e $f $g $h $a
      (local.set $t1 (i64.add
        (i64.add (local.get $a) (i64.add (i64.load offset=56 (local.get $k)) (i64.load offset=696 (local.get $k))))
        (i64.add
          (i64.xor (i64.xor (i64.rotr (local.get $f) (i64.const 14)) (i64.rotr (local.get $f) (i64.const 18)))
                   (i64.rotr (local.get $f) (i64.const 41)))
          (i64.xor (local.get $h) (i64.and (local.get $f) (i64.xor (local.get $g) (local.get $h)))))))
      (local.set $e (i64.add (local.get $e) (local.get $t1)))
      (local.set $a (i64.add (local.get $t1) (i64.add
        (i64.xor (i64.xor (i64.rotr (local.get $b) (i64.const 28)) (i64.rotr (local.get $b) (i64.const 34)))
                 (i64.rotr (local.get $b) (i64.const 39)))
        (i64.or (i64.and (local.get $b) (local.get $c)) (i64.and (local.get $d) (i64.or (local.get $b) (local.get $c)))))))
      (br_if $rounds (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 64))) (i32.const 640))))
    (i64.store offset=1280 (i32.const 0) (i64.add (local.get $a) (i64.load offset=1280 (i32.const 0))))
    (i64.store offset=1288 (i32.const 0) (i64.add (local.get $b) (i64.load offset=1288 (i32.const 0))))
    (i64.store offset=1296 (i32.const 0) (i64.add (local.get $c) (i64.load offset=1296 (i32.const 0))))
    (i64.store offset=1304 (i32.const 0) (i64.add (local.get $d) (i64.load offset=1304 (i32.const 0))))
    (i64.store offset=1312 (i32.const 0) (i64.add (local.get $e) (i64.load offset=1312 (i32.const 0))))
    (i64.store offset=1320 (i32.const 0) (i64.add (local.get $f) (i64.load offset=1320 (i32.const 0))))
    (i64.store offset=1328 (i32.const 0) (i64.add (local.get $g) (i64.load offset=1328 (i32.const 0))))
    (i64.store offset=1336 (i32.const 0) (i64.add (local.get $h) (i64.load offset=1336 (i32.const 0)))))

  ;; Compresses $n consecutive 128-byte blocks from $p into H.
  (func $blocks (export "blocks") (param $p i32) (param $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (call $compress (local.get $p))
        (local.set $p (i32.add (local.get $p) (i32.const 128)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next))))

  ;; Writes the 48-byte digest in H to $out.
  (func $digest (param $out i32)
    (v128.store offset=0 (local.get $out)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=1280 (i32.const 0)) (v128.load offset=1280 (i32.const 0))))
    (v128.store offset=16 (local.get $out)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=1296 (i32.const 0)) (v128.load offset=1296 (i32.const 0))))
    (v128.store offset=32 (local.get $out)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=1312 (i32.const 0)) (v128.load offset=1312 (i32.const 0)))))

  ;; Ends a message of $total bytes (a whole number below 2^53) whose last $len bytes (fewer
  ;; than 128) are at $p: pads them in PAD, compresses, and writes the digest to $out (which
  ;; may overlap $p).
  (func $finish (export "finish") (param $p i32) (param $len i32) (param $total f64) (param $out i32)
    (local $end i32)
    (memory.fill (i32.const 1344) (i32.const 0) (i32.const 256))
    (memory.copy (i32.const 1344) (local.get $p) (local.get $len))
    (i32.store8 offset=1344 (local.get $len) (i32.const 0x80))
    ;; The message length in bits, a big-endian 128-bit number, ends the last block.
    (local.set $end (select (i32.const 1472) (i32.const 1600) (i32.lt_u (local.get $len) (i32.const 112))))
    (v128.store (i32.sub (local.get $end) (i32.const 16))
      (i8x16.shuffle 0 0 0 0 0 0 0 0 23 22 21 20 19 18 17 16
        (v128.const i64x2 0 0)
        (i64x2.splat (i64.trunc_f64_u (f64.mul (local.get $total) (f64.const 8))))))
    (call $compress (i32.const 1344))
    (if (i32.eq (local.get $end) (i32.const 1600)) (then (call $compress (i32.const 1472))))
    (call $digest (local.get $out)))

  ;; SHA-384 of the 4096-byte page at $p, to $out.
  (func $page (export "page") (param $p i32) (param $out i32)
    (call $init)
    (call $blocks (local.get $p) (i32.const 32))
    (call $compress (i32.const 1664))
    (call $digest (local.get $out)))

  ;; Compresses the 128-byte blocks at $pa and $pb into the two lanes of H2.
  (func $compress2 (param $pa i32) (param $pb i32)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local $e v128) (local $f v128) (local $g v128) (local $h v128)
    (local $t1 v128) (local $x v128) (local $y v128) (local $k i32)
    ;; W2[0..15]: word i of both blocks.
    (v128.store offset=3328 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=0 (local.get $pa)) (v128.load offset=0 (local.get $pb))))
    (v128.store offset=3344 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=0 (local.get $pa)) (v128.load offset=0 (local.get $pb))))
    (v128.store offset=3360 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=16 (local.get $pa)) (v128.load offset=16 (local.get $pb))))
    (v128.store offset=3376 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=16 (local.get $pa)) (v128.load offset=16 (local.get $pb))))
    (v128.store offset=3392 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=32 (local.get $pa)) (v128.load offset=32 (local.get $pb))))
    (v128.store offset=3408 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=32 (local.get $pa)) (v128.load offset=32 (local.get $pb))))
    (v128.store offset=3424 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=48 (local.get $pa)) (v128.load offset=48 (local.get $pb))))
    (v128.store offset=3440 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=48 (local.get $pa)) (v128.load offset=48 (local.get $pb))))
    (v128.store offset=3456 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=64 (local.get $pa)) (v128.load offset=64 (local.get $pb))))
    (v128.store offset=3472 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=64 (local.get $pa)) (v128.load offset=64 (local.get $pb))))
    (v128.store offset=3488 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=80 (local.get $pa)) (v128.load offset=80 (local.get $pb))))
    (v128.store offset=3504 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=80 (local.get $pa)) (v128.load offset=80 (local.get $pb))))
    (v128.store offset=3520 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=96 (local.get $pa)) (v128.load offset=96 (local.get $pb))))
    (v128.store offset=3536 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=96 (local.get $pa)) (v128.load offset=96 (local.get $pb))))
    (v128.store offset=3552 (i32.const 0)
      (i8x16.shuffle 7 6 5 4 3 2 1 0 23 22 21 20 19 18 17 16 (v128.load offset=112 (local.get $pa)) (v128.load offset=112 (local.get $pb))))
    (v128.store offset=3568 (i32.const 0)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 31 30 29 28 27 26 25 24 (v128.load offset=112 (local.get $pa)) (v128.load offset=112 (local.get $pb))))
    ;; W2[16..79] as in $compress; $k = 16 * (t - 16).
    (local.set $k (i32.const 0))
    (loop $schedule
      (local.set $x (v128.load offset=3552 (local.get $k)))
      (local.set $y (v128.load offset=3344 (local.get $k)))
      (v128.store offset=3584 (local.get $k)
        (i64x2.add
          (i64x2.add
            (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $x) (i32.const 19)) (i64x2.shl (local.get $x) (i32.const 45))) (v128.or (i64x2.shr_u (local.get $x) (i32.const 61)) (i64x2.shl (local.get $x) (i32.const 3)))) (i64x2.shr_u (local.get $x) (i32.const 6)))
            (v128.load offset=3472 (local.get $k)))
          (i64x2.add
            (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $y) (i32.const 1)) (i64x2.shl (local.get $y) (i32.const 63))) (v128.or (i64x2.shr_u (local.get $y) (i32.const 8)) (i64x2.shl (local.get $y) (i32.const 56)))) (i64x2.shr_u (local.get $y) (i32.const 7)))
            (v128.load offset=3328 (local.get $k)))))
      (br_if $schedule (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 16))) (i32.const 1024))))
    (local.set $a (v128.load offset=4608 (i32.const 0)))
    (local.set $b (v128.load offset=4624 (i32.const 0)))
    (local.set $c (v128.load offset=4640 (i32.const 0)))
    (local.set $d (v128.load offset=4656 (i32.const 0)))
    (local.set $e (v128.load offset=4672 (i32.const 0)))
    (local.set $f (v128.load offset=4688 (i32.const 0)))
    (local.set $g (v128.load offset=4704 (i32.const 0)))
    (local.set $h (v128.load offset=4720 (i32.const 0)))
    ;; The 80 rounds; $k = 16 * t indexes K2 and W2. Ch(e, f, g) and Maj(a, b, c) are bit selects.
    (local.set $k (i32.const 0))
    (loop $rounds
      ;; round t+0: a..h are $a $b $c $d $e $f $g $h
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $h) (i64x2.add (v128.load offset=2048 (local.get $k)) (v128.load offset=3328 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $e) (i32.const 14)) (i64x2.shl (local.get $e) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $e) (i32.const 18)) (i64x2.shl (local.get $e) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $e) (i32.const 41)) (i64x2.shl (local.get $e) (i32.const 23))))
          (v128.bitselect (local.get $f) (local.get $g) (local.get $e)))))
      (local.set $d (i64x2.add (local.get $d) (local.get $t1)))
      (local.set $h (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $a) (i32.const 28)) (i64x2.shl (local.get $a) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $a) (i32.const 34)) (i64x2.shl (local.get $a) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $a) (i32.const 39)) (i64x2.shl (local.get $a) (i32.const 25))))
        (v128.bitselect (local.get $b) (local.get $a) (v128.xor (local.get $a) (local.get $c))))))
      ;; round t+1: a..h are $h $a $b $c $d $e $f $g
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $g) (i64x2.add (v128.load offset=2064 (local.get $k)) (v128.load offset=3344 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $d) (i32.const 14)) (i64x2.shl (local.get $d) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $d) (i32.const 18)) (i64x2.shl (local.get $d) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $d) (i32.const 41)) (i64x2.shl (local.get $d) (i32.const 23))))
          (v128.bitselect (local.get $e) (local.get $f) (local.get $d)))))
      (local.set $c (i64x2.add (local.get $c) (local.get $t1)))
      (local.set $g (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $h) (i32.const 28)) (i64x2.shl (local.get $h) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $h) (i32.const 34)) (i64x2.shl (local.get $h) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $h) (i32.const 39)) (i64x2.shl (local.get $h) (i32.const 25))))
        (v128.bitselect (local.get $a) (local.get $h) (v128.xor (local.get $h) (local.get $b))))))
      ;; round t+2: a..h are $g $h $a $b $c $d $e $f
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $f) (i64x2.add (v128.load offset=2080 (local.get $k)) (v128.load offset=3360 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $c) (i32.const 14)) (i64x2.shl (local.get $c) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $c) (i32.const 18)) (i64x2.shl (local.get $c) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $c) (i32.const 41)) (i64x2.shl (local.get $c) (i32.const 23))))
          (v128.bitselect (local.get $d) (local.get $e) (local.get $c)))))
      (local.set $b (i64x2.add (local.get $b) (local.get $t1)))
      (local.set $f (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $g) (i32.const 28)) (i64x2.shl (local.get $g) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $g) (i32.const 34)) (i64x2.shl (local.get $g) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $g) (i32.const 39)) (i64x2.shl (local.get $g) (i32.const 25))))
        (v128.bitselect (local.get $h) (local.get $g) (v128.xor (local.get $g) (local.get $a))))))
      ;; round t+3: a..h are $f $g $h $a $b $c $d $e
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $e) (i64x2.add (v128.load offset=2096 (local.get $k)) (v128.load offset=3376 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $b) (i32.const 14)) (i64x2.shl (local.get $b) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $b) (i32.const 18)) (i64x2.shl (local.get $b) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $b) (i32.const 41)) (i64x2.shl (local.get $b) (i32.const 23))))
          (v128.bitselect (local.get $c) (local.get $d) (local.get $b)))))
      (local.set $a (i64x2.add (local.get $a) (local.get $t1)))
      (local.set $e (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $f) (i32.const 28)) (i64x2.shl (local.get $f) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $f) (i32.const 34)) (i64x2.shl (local.get $f) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $f) (i32.const 39)) (i64x2.shl (local.get $f) (i32.const 25))))
        (v128.bitselect (local.get $g) (local.get $f) (v128.xor (local.get $f) (local.get $h))))))
      ;; round t+4: a..h are $e $f $g $h $a $b $c $d
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $d) (i64x2.add (v128.load offset=2112 (local.get $k)) (v128.load offset=3392 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $a) (i32.const 14)) (i64x2.shl (local.get $a) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $a) (i32.const 18)) (i64x2.shl (local.get $a) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $a) (i32.const 41)) (i64x2.shl (local.get $a) (i32.const 23))))
          (v128.bitselect (local.get $b) (local.get $c) (local.get $a)))))
      (local.set $h (i64x2.add (local.get $h) (local.get $t1)))
      (local.set $d (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $e) (i32.const 28)) (i64x2.shl (local.get $e) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $e) (i32.const 34)) (i64x2.shl (local.get $e) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $e) (i32.const 39)) (i64x2.shl (local.get $e) (i32.const 25))))
        (v128.bitselect (local.get $f) (local.get $e) (v128.xor (local.get $e) (local.get $g))))))
      ;; round t+5: a..h are $d $e $f $g $h $a $b $c
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $c) (i64x2.add (v128.load offset=2128 (local.get $k)) (v128.load offset=3408 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $h) (i32.const 14)) (i64x2.shl (local.get $h) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $h) (i32.const 18)) (i64x2.shl (local.get $h) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $h) (i32.const 41)) (i64x2.shl (local.get $h) (i32.const 23))))
          (v128.bitselect (local.get $a) (local.get $b) (local.get $h)))))
      (local.set $g (i64x2.add (local.get $g) (local.get $t1)))
      (local.set $c (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $d) (i32.const 28)) (i64x2.shl (local.get $d) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $d) (i32.const 34)) (i64x2.shl (local.get $d) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $d) (i32.const 39)) (i64x2.shl (local.get $d) (i32.const 25))))
        (v128.bitselect (local.get $e) (local.get $d) (v128.xor (local.get $d) (local.get $f))))))
      ;; round t+6: a..h are $c $d $e $f $g $h $a $b
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $b) (i64x2.add (v128.load offset=2144 (local.get $k)) (v128.load offset=3424 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $g) (i32.const 14)) (i64x2.shl (local.get $g) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $g) (i32.const 18)) (i64x2.shl (local.get $g) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $g) (i32.const 41)) (i64x2.shl (local.get $g) (i32.const 23))))
          (v128.bitselect (local.get $h) (local.get $a) (local.get $g)))))
      (local.set $f (i64x2.add (local.get $f) (local.get $t1)))
      (local.set $b (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $c) (i32.const 28)) (i64x2.shl (local.get $c) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $c) (i32.const 34)) (i64x2.shl (local.get $c) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $c) (i32.const 39)) (i64x2.shl (local.get $c) (i32.const 25))))
        (v128.bitselect (local.get $d) (local.get $c) (v128.xor (local.get $c) (local.get $e))))))
      ;; round t+7: a..h are $b $c $d $e $f $g $h $a
      (local.set $t1 (i64x2.add
        (i64x2.add (local.get $a) (i64x2.add (v128.load offset=2160 (local.get $k)) (v128.load offset=3440 (local.get $k))))
        (i64x2.add
          (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $f) (i32.const 14)) (i64x2.shl (local.get $f) (i32.const 50)))
                              (v128.or (i64x2.shr_u (local.get $f) (i32.const 18)) (i64x2.shl (local.get $f) (i32.const 46))))
                    (v128.or (i64x2.shr_u (local.get $f) (i32.const 41)) (i64x2.shl (local.get $f) (i32.const 23))))
          (v128.bitselect (local.get $g) (local.get $h) (local.get $f)))))
      (local.set $e (i64x2.add (local.get $e) (local.get $t1)))
      (local.set $a (i64x2.add (local.get $t1) (i64x2.add
        (v128.xor (v128.xor (v128.or (i64x2.shr_u (local.get $b) (i32.const 28)) (i64x2.shl (local.get $b) (i32.const 36)))
                            (v128.or (i64x2.shr_u (local.get $b) (i32.const 34)) (i64x2.shl (local.get $b) (i32.const 30))))
                  (v128.or (i64x2.shr_u (local.get $b) (i32.const 39)) (i64x2.shl (local.get $b) (i32.const 25))))
        (v128.bitselect (local.get $c) (local.get $b) (v128.xor (local.get $b) (local.get $d))))))
      (br_if $rounds (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 128))) (i32.const 1280))))
    (v128.store offset=4608 (i32.const 0) (i64x2.add (local.get $a) (v128.load offset=4608 (i32.const 0))))
    (v128.store offset=4624 (i32.const 0) (i64x2.add (local.get $b) (v128.load offset=4624 (i32.const 0))))
    (v128.store offset=4640 (i32.const 0) (i64x2.add (local.get $c) (v128.load offset=4640 (i32.const 0))))
    (v128.store offset=4656 (i32.const 0) (i64x2.add (local.get $d) (v128.load offset=4656 (i32.const 0))))
    (v128.store offset=4672 (i32.const 0) (i64x2.add (local.get $e) (v128.load offset=4672 (i32.const 0))))
    (v128.store offset=4688 (i32.const 0) (i64x2.add (local.get $f) (v128.load offset=4688 (i32.const 0))))
    (v128.store offset=4704 (i32.const 0) (i64x2.add (local.get $g) (v128.load offset=4704 (i32.const 0))))
    (v128.store offset=4720 (i32.const 0) (i64x2.add (local.get $h) (v128.load offset=4720 (i32.const 0)))))

  ;; SHA-384 of the 4096-byte pages at $pa and $pb, to $outa and $outb.
  (func $pair (export "pair") (param $pa i32) (param $pb i32) (param $outa i32) (param $outb i32)
    (local $i i32) (local $x v128)
    (loop $iv
      (v128.store offset=4608 (i32.shl (local.get $i) (i32.const 1)) (i64x2.splat (i64.load offset=1600 (local.get $i))))
      (br_if $iv (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 8))) (i32.const 64))))
    (local.set $i (i32.const 0))
    (loop $blocks
      (call $compress2 (i32.add (local.get $pa) (local.get $i)) (i32.add (local.get $pb) (local.get $i)))
      (br_if $blocks (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 128))) (i32.const 4096))))
    (call $compress2 (i32.const 1664) (i32.const 1664))
    (local.set $x (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=4608 (i32.const 0)) (v128.load offset=4608 (i32.const 0))))
    (v128.store64_lane offset=0 0 (local.get $outa) (local.get $x))
    (v128.store64_lane offset=0 1 (local.get $outb) (local.get $x))
    (local.set $x (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=4624 (i32.const 0)) (v128.load offset=4624 (i32.const 0))))
    (v128.store64_lane offset=8 0 (local.get $outa) (local.get $x))
    (v128.store64_lane offset=8 1 (local.get $outb) (local.get $x))
    (local.set $x (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=4640 (i32.const 0)) (v128.load offset=4640 (i32.const 0))))
    (v128.store64_lane offset=16 0 (local.get $outa) (local.get $x))
    (v128.store64_lane offset=16 1 (local.get $outb) (local.get $x))
    (local.set $x (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=4656 (i32.const 0)) (v128.load offset=4656 (i32.const 0))))
    (v128.store64_lane offset=24 0 (local.get $outa) (local.get $x))
    (v128.store64_lane offset=24 1 (local.get $outb) (local.get $x))
    (local.set $x (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=4672 (i32.const 0)) (v128.load offset=4672 (i32.const 0))))
    (v128.store64_lane offset=32 0 (local.get $outa) (local.get $x))
    (v128.store64_lane offset=32 1 (local.get $outb) (local.get $x))
    (local.set $x (i8x16.shuffle 7 6 5 4 3 2 1 0 15 14 13 12 11 10 9 8 (v128.load offset=4688 (i32.const 0)) (v128.load offset=4688 (i32.const 0))))
    (v128.store64_lane offset=40 0 (local.get $outa) (local.get $x))
    (v128.store64_lane offset=40 1 (local.get $outb) (local.get $x)))

  ;; For each of the $n pages from $src, with a flag byte at $flags + i and a 48-byte slot at
  ;; $out + 48 * i: sets flag bit 1 if the page is all zero; else, if flag bit 0 is set (the
  ;; page is measured), writes the page's SHA-384 to its slot. Pages are hashed in pairs.
  (func (export "pages") (param $src i32) (param $n i32) (param $flags i32) (param $out i32)
    (local $q i32) (local $end i32) (local $any v128) (local $held i32) (local $heldOut i32)
    (local.set $held (i32.const -1))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $any (v128.const i64x2 0 0))
        (local.set $q (local.get $src))
        (local.set $end (i32.add (local.get $src) (i32.const 4096)))
        (loop $scan
          (local.set $any (v128.or (local.get $any)
            (v128.or (v128.or (v128.load offset=0 (local.get $q)) (v128.load offset=16 (local.get $q)))
                     (v128.or (v128.load offset=32 (local.get $q)) (v128.load offset=48 (local.get $q))))))
          (br_if $scan (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 64))) (local.get $end))))
        (if (i32.eqz (v128.any_true (local.get $any)))
          (then (i32.store8 (local.get $flags) (i32.or (i32.load8_u (local.get $flags)) (i32.const 2))))
          (else
            (if (i32.and (i32.load8_u (local.get $flags)) (i32.const 1))
              (then
                (if (i32.eq (local.get $held) (i32.const -1))
                  (then
                    (local.set $held (local.get $src))
                    (local.set $heldOut (local.get $out)))
                  (else
                    (call $pair (local.get $held) (local.get $src) (local.get $heldOut) (local.get $out))
                    (local.set $held (i32.const -1))))))))
        (local.set $src (i32.add (local.get $src) (i32.const 4096)))
        (local.set $flags (i32.add (local.get $flags) (i32.const 1)))
        (local.set $out (i32.add (local.get $out) (i32.const 48)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (if (i32.ne (local.get $held) (i32.const -1))
      (then (call $page (local.get $held) (local.get $heldOut)))))

  ;; Replaces the first 48 bytes of the 112-byte record at $p with the record's SHA-384: one
  ;; step of the SEV-SNP launch digest, whose PAGE_INFO starts with the digest so far.
  (func (export "chain") (param $p i32)
    (call $init)
    (call $finish (local.get $p) (i32.const 112) (f64.const 112) (local.get $p))))
